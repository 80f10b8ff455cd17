"""``streamrec eval``: offline quality on datasets, and held-out evaluation through the API."""
