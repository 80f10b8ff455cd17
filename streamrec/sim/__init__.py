"""``streamrec simulate``: a seeded synthetic shop and its traffic through the public API."""
