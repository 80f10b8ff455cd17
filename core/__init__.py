"""The bottom layer every streamrec package shares: settings, Redis key names, Kafka and
Redis connection options, logging, limits and small helpers. It imports no other
streamrec package (only ``schemas`` may sit beside it)."""

__version__ = "0.1.0"
