"""Garbage-collector settings of the long-running processes (API and worker).

Both allocate many short-lived objects per request or event; with CPython's default
gen-0 threshold (700) the collector ran every few requests or events, and its full
collections walk every long-lived object (FastAPI/pydantic/prometheus in the API, the
history table in the worker): tens of ms of p99 at 1000 req/s in the API, and about a
third of the worker's batch-processing CPU on a backlog (110 → 71 µs per event with the
collector off, ``scripts/bench_processor.py``-style measurement of issue 14).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

#: Objects allocated between young collections, and the older generations' ratios.
THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    """Freeze what startup built (never scanned again) and collect less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)


@contextmanager
def paused() -> Iterator[None]:
    """No collection inside the block: a retrain reading a 1M-event log allocates
    millions of objects that never form cycles, and the collector walked them again and
    again (about a fifth of the read)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
