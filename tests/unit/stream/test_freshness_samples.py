"""Freshness samples are of live traffic: old history being caught up on is counted apart."""

from __future__ import annotations

import time

from core.ops_records import FRESHNESS_LIVE_S
from core.settings import Settings
from stream import metrics
from stream.processor import REPLAYED, BatchResult
from stream.state import WorkerState


def test_a_backfill_does_not_become_freshness() -> None:
    # No server is contacted: the Redis client connects on first use.
    state = WorkerState(Settings(redis_url="redis://127.0.0.1:1/0"))
    caught_up = metrics.CATCH_UP._value.get()
    observed = metrics.FRESHNESS._sum.get()
    years = 9 * 365 * 86400.0  # a Taobao event of 2017 loaded with its own time
    state.observe_lists(BatchResult(freshness_s=[0.05, 0.2, years, FRESHNESS_LIVE_S + 1]))
    assert state.freshness.quantiles_ms()["freshness_p99_ms"] < 250
    assert list(state.freshness.samples) == [0.05, 0.2]
    assert metrics.CATCH_UP._value.get() == caught_up + 2
    assert abs(metrics.FRESHNESS._sum.get() - observed - 0.25) < 1e-9
    # an hour late is still late traffic, and reported as such
    state.observe_lists(BatchResult(freshness_s=[FRESHNESS_LIVE_S]))
    assert max(state.freshness.samples) == FRESHNESS_LIVE_S



def test_a_replayed_event_is_catch_up_however_recent() -> None:
    state = WorkerState(Settings(redis_url="redis://127.0.0.1:1/0"))
    caught_up = metrics.CATCH_UP._value.get()
    observed = sum(bucket.get() for bucket in metrics.FRESHNESS._buckets)
    # the sample of an event below the replay's end (receive time processor.REPLAYED),
    # whose list a rebuild rewrote seconds after it arrived, and a live one
    state.observe_lists(BatchResult(freshness_s=[time.time() - REPLAYED, 0.1]))
    assert list(state.freshness.samples) == [0.1]
    assert metrics.CATCH_UP._value.get() == caught_up + 1
    assert sum(bucket.get() for bucket in metrics.FRESHNESS._buckets) == observed + 1


def test_a_receive_time_ahead_of_the_worker_clock_is_no_negative_freshness() -> None:
    """The API's host clock a few seconds ahead of the worker's (or the worker's clock
    stepped back): the samples were negative, and so were the p50 in `streamrec status`
    and the sum of the Prometheus histogram."""
    state = WorkerState(Settings(redis_url="redis://127.0.0.1:1/0"))
    observed = metrics.FRESHNESS._sum.get()
    state.observe_lists(BatchResult(freshness_s=[-2.0, -2.5, 0.1]))
    assert list(state.freshness.samples) == [0.0, 0.0, 0.1]
    assert state.freshness.quantiles_ms()["freshness_p50_ms"] == 0.0
    assert abs(metrics.FRESHNESS._sum.get() - observed - 0.1) < 1e-9
