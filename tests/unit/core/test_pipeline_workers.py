"""Worker entries of the pipeline status (core/worker_beats.py): a heartbeat written
after the status read its clock (the worker beats while `streamrec status` reads Redis)
is 0 s old, never negative ("-0s ago" in `streamrec status`)."""

from __future__ import annotations

from core.worker_beats import worker_entries as _workers


def test_a_heartbeat_newer_than_the_read_is_zero_seconds_old() -> None:
    now = 1_000_000.0
    beats = {"w-1": {"heartbeat_at": repr(now + 0.4), "ready": "1"},
             "w-2": {"heartbeat_at": repr(now - 3.0), "ready": "1"}}
    ages = {w["id"]: w["heartbeat_age_s"] for w in _workers(beats, now)}
    assert ages == {"w-1": 0.0, "w-2": 3.0}


def _beat(now: float, p50: float, p99: float, counts: dict[str, int]) -> dict[str, str]:
    import orjson

    return {"heartbeat_at": repr(now - 1.0), "ready": "1", "freshness_p50_ms": str(p50),
            "freshness_p99_ms": str(p99), "freshness_histogram": orjson.dumps(counts).decode()}


def test_freshness_covers_every_live_worker_not_the_last_to_publish() -> None:
    """Status showed the freshness of whichever worker published last: a slow worker's
    p99 came and went with the other's heartbeats. Now: every live worker's histogram
    summed, and the largest p50/p99 (never below the union's quantile)."""
    from core.worker_beats import workers_freshness

    now = 2_000_000.0
    beats = {"fast": _beat(now, 20.0, 40.0, {"25": 90, "50": 10}),
             "slow": _beat(now, 300.0, 2400.0, {"500": 50, "5000": 50}),
             "gone": {**_beat(now, 1.0, 9000.0, {"10": 5}), "heartbeat_at": repr(now - 600)}}
    fresh = workers_freshness(_workers(beats, now), now)
    assert fresh is not None
    assert (fresh["p50_ms"], fresh["p99_ms"], fresh["workers"]) == (300.0, 2400.0, 2)
    counts = {b["le_ms"]: b["count"] for b in fresh["histogram"]}
    assert (counts[25], counts[50], counts[500], counts[5000], counts[10]) == (90, 10, 50, 50, 0)
    assert sum(counts.values()) == 200 and not fresh["stale"] and fresh["age_s"] == 1.0
    assert workers_freshness(_workers({"w": {"heartbeat_at": repr(now)}}, now), now) is None
