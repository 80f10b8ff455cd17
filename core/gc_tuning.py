"""Garbage-collector settings of the long-running processes (API and worker).

Both allocate many short-lived objects per request or event; with CPython's default
gen-0 threshold (700) the collector ran every few requests or events, and its full
collections walk every long-lived object (FastAPI/pydantic/prometheus in the API): tens
of ms of p99 at 1000 req/s in the API, and about a third of the worker's batch-processing
CPU on a backlog (110 → 71 µs per event with the collector off,
``scripts/bench_processor.py``-style measurement of issue 14). While a worker is behind,
:func:`backlog_gc` makes its young collections four times rarer still. The worker's
largest long-lived structure, the history table, is not walked: its values are tuples of
strings and numbers (``History.to_dict``), which the collector stops tracking, and dicts
of them, which each full collection untracks (a table of 20,000 shoppers' histories: a
full collection of 0.7–1.2 s with lists, 6–17 ms with tuples, on a loaded machine).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

#: Objects allocated between young collections, and the older generations' ratios.
THRESHOLDS = (50_000, 20, 100)
#: The same while a worker is behind (:func:`backlog_gc`). A young collection scans every
#: object allocated since the last one that is still alive: on a backlog that is mostly a
#: step's events, ops and histories, alive for the whole step (thousands of events), so
#: each was scanned two or three times and then freed. At 200,000 most of them are freed
#: before a collection comes: 22 young collections per 40,000 burst events became 2, and
#: the batch processor's CPU per event fell by a fifth (measured on the burst's events;
#: in a worker's burst ~15 % of its busy time was in the collector, py-spy --native). A
#: collection then pauses longer, which only a worker already behind (lists waiting) sees.
BACKLOG_THRESHOLDS = (200_000, 20, 100)


def tune_gc() -> None:
    """Freeze what startup built (never scanned again) and collect less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)


def backlog_gc(behind: bool) -> None:
    """Young collections rarer while the worker is behind (:data:`BACKLOG_THRESHOLDS`),
    as :func:`tune_gc` sets them otherwise: throughput while lists wait anyway, short
    pauses when every event's list is due at once."""
    gc.set_threshold(*(BACKLOG_THRESHOLDS if behind else THRESHOLDS))


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


def step_gc(behind: bool) -> AbstractContextManager[None]:
    """No collection inside one step of a worker that is behind (:func:`paused`), else
    nothing. A step's events, ops and histories live until its end and are freed by
    their reference counts, never by the collector, yet young collections inside the
    step scanned them; one collection after the step scans only what survives it. On
    the burst's events (``scripts/bench_burst_processor.py``, 3 alternating pairs,
    2026-12-06) the processor's CPU per event fell 95.3 → 80.8, 94.0 → 87.5, 85.0 →
    81.3 µs. A step is at most ``Settings.stream_step_events`` events, which bounds the
    cyclic garbage of its own that waits for the next collection; the collector stays off
    across the step's Redis round trips too, so what other tasks (timers, the catalog
    agent) allocate meanwhile waits with it, for as long as Redis takes to answer. A
    cancelled or failed step turns it back on, and of overlapping holders the one that
    found it on does (``tests/unit/core/test_gc_tuning.py``)."""
    return paused() if behind else nullcontext()
