"""``streamrec bench``: serving, ingest and freshness, each beside a baseline in one run."""
