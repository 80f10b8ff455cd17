"""streamrec: a self-hosted, real-time recommender (Kafka → Faust → Redis → FastAPI).

This package is the top layer (CLI, embedded stack, benchmarks, simulator, evaluation,
operator tools); the version lives in :mod:`core` so lower layers can report it.
"""

from core import __version__

__all__ = ["__version__"]
