"""The Faust worker: glue between Kafka topics, recommender/ and Redis.

Agents stay thin: decode and validate at the door (bad messages → dead-letter topic),
call pure functions from ``recommender/``, and write through :mod:`stream.redis_writer`.
"""
