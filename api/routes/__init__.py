"""One router per resource: tracking events, catalog, recommendations, operations."""
