"""Test files in the order that ends a parallel leg soonest: the longest first.

``make test`` runs each leg in pytest-xdist processes that take whole files
(``--dist loadfile``) from a queue in collection order. In path order a long file
(a chaos run, the cluster acceptance) could start last and run alone while the other
processes sat idle: the Tansu leg's three processes were busy 605, 567 and 541 s of its
625 s (2026-12-07). Longest-processing-time-first scheduling puts the long files at the
head of the queue, so the short ones fill in around them at the end.

The weights are each file's seconds in the leg (setup, call and teardown of its tests)
from ``tests/file_durations.json``, one table per session broker; ``python
scripts/file_durations.py --leg tansu|kafka LOG`` writes a leg's table from the output of
a run with ``--durations=0``. A file the table does not know counts as
:data:`UNKNOWN_S`; stale weights only cost time, never a test. Tests of one file keep
their order, and every process computes the same order from the same table (xdist
requires it).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Where the per-leg file weights are kept.
TABLE = Path(__file__).with_name("file_durations.json")
#: Seconds assumed for a file missing from the table (new since it was written): a
#: middling file (the median integration file took 6.6 s in the Tansu leg, 16.1 s in the
#: Kafka leg; most unit files well under 1 s).
UNKNOWN_S = 5.0


def load_weights(leg: str, table: Path = TABLE) -> dict[str, float]:
    """The ``leg``'s seconds per test file (relative path), empty when the table is missing
    or unreadable: then the order stays the collection's."""
    try:
        data = json.loads(table.read_text())
    except (OSError, ValueError):
        return {}
    weights = data.get(leg) if isinstance(data, dict) else None
    return {str(k): float(v) for k, v in weights.items()} if isinstance(weights, dict) else {}


def file_of(nodeid: str) -> str:
    """The test file of a pytest node id (``tests/x/test_y.py::test_z[1]``)."""
    return nodeid.split("::", 1)[0]


def heaviest_first(items: Sequence[Any], weights: dict[str, float]) -> list[Any]:
    """``items`` (anything with a ``nodeid``) grouped by file, the files by descending
    weight (ties and unknown files in their collection order), each file's items in
    their own order."""
    if not weights:
        return list(items)
    groups: dict[str, list[Any]] = {}
    for item in items:
        groups.setdefault(file_of(item.nodeid), []).append(item)
    # sorted() is stable: equal weights keep the collection order
    ranked = sorted(groups, key=lambda name: -weights.get(name, UNKNOWN_S))
    return [item for name in ranked for item in groups[name]]
