"""How fast this machine runs Python right now, beside a benchmark's numbers.

The shared 2-core VM the benchmarks run on changes speed by ±20-30 % from hour to hour
(the same code's burst moved from 6,899 to 5,841 events/s between two days, every
process's CPU per event up by a fifth): a number alone does not say whether the code or
the machine changed. :func:`python_loop_ms` times one fixed single-threaded workload
(dict and list churn, the kind of work the worker's per-event code does) on an idle
stack; its ratio between two runs is the machine's, not the code's.
"""

from __future__ import annotations

import statistics
import time

__all__ = ["python_loop_ms"]

#: Iterations of the workload: ~30-50 ms on the benchmark VM (29.4 at its fastest).
LOOP = 200_000


def _workload() -> int:
    counts: dict[int, int] = {}
    rows: list[tuple[int, int]] = []
    for i in range(LOOP):
        key = (i * 2654435761) & 4095
        counts[key] = counts.get(key, 0) + 1
        if i & 7 == 0:
            rows.append((key, i))
    return len(rows) + len(counts)


def python_loop_ms(repeats: int = 7) -> float:
    """The median milliseconds of :func:`_workload` over ``repeats`` runs (the median
    keeps one preempted run out); lower is faster."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        _workload()
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 2)
