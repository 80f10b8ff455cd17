"""The HTTP API of streamrec: tracking and catalog writes to Kafka, recommendations read
from Redis. ``api.app.create_app`` builds the FastAPI app; ``api.server.run_api`` serves it.
"""
