"""The worker's ``streamrec_consumer_lag`` series follow its partition assignment: a
partition a rebalance gave to another worker stops being exported here (it kept the lag
it had at the handover, forever, next to the new owner's series)."""

from __future__ import annotations

from faust.types import TP
from prometheus_client import REGISTRY

from stream.timers import report_lag
from tests.unit.stream.test_backlog import Consumer


def _lag_series() -> dict[tuple[str, str], float]:
    return {(s.labels["topic"], s.labels["partition"]): s.value
            for family in REGISTRY.collect() if family.name == "streamrec_consumer_lag"
            for s in family.samples}


def test_revoked_partitions_lose_their_lag_series() -> None:
    everything = Consumer({TP("events", 0): 30, TP("events", 1): 20, TP("catalog", 0): 5,
                           TP("other", 0): 7}, {TP("events", 0): 3, TP("events", 1): 19})
    report_lag(everything, ("events", "catalog"))
    assert _lag_series() == {("events", "0"): 26, ("events", "1"): 0, ("catalog", "0"): 5}
    # A rebalance leaves this worker events 1 only.
    report_lag(Consumer({TP("events", 1): 25}, {TP("events", 1): 19}), ("events", "catalog"))
    assert _lag_series() == {("events", "1"): 5}
    # A partition held but not fetched yet keeps no stale value of another worker's.
    report_lag(Consumer({TP("events", 1): 25, TP("events", 2): None}, {TP("events", 1): 24}),
               ("events", "catalog"))
    assert _lag_series() == {("events", "1"): 0}
    report_lag(Consumer({}, {}), ("events", "catalog"))
    assert _lag_series() == {}
