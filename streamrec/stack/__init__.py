"""The embedded stack: local Kafka-protocol broker, Redis, worker and API processes."""
