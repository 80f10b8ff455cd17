"""streamrec: a self-hosted, real-time recommender (Kafka → Faust → Redis → FastAPI)."""

__version__ = "0.1.0"
