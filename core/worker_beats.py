"""Worker heartbeats as ``streamrec status`` shows them: one entry per live worker, and
the freshness of them all.

Each worker writes a heartbeat hash every 2 s (``stream.timers.publish_heartbeat``) with
its progress and, while it has samples, its own freshness quantiles and histogram. Pure:
hashes in, dicts out; :class:`core.pipeline_status.PipelineProbe` reads the hashes.
"""

from __future__ import annotations

from typing import Any

import orjson

from core.ops_records import parse_histogram
from core.redis_client import num

__all__ = ["STALE_AFTER_S", "STALE_FRESHNESS_S", "worker_entries", "workers_freshness"]

#: Heartbeats refresh every 2 s and expire after ~15 s: older than this = likely dead.
STALE_AFTER_S = 6.0
#: Freshness published longer ago than this is ``stale``: no worker has applied live
#: events since (workers publish with every heartbeat while they have samples), e.g. the
#: worker that published it stopped. Status and the dashboard show its age then.
STALE_FRESHNESS_S = 60.0
#: Heartbeat fields that are numbers.
_NUMERIC_BEAT_FIELDS = ("pid", "processed", "metrics_port", "started_at", "heartbeat_at",
                        "sweep_pending", "lists_waiting", "events_per_s",
                        "freshness_p50_ms", "freshness_p99_ms")



def workers_freshness(workers: list[dict[str, Any]], now: float) -> dict[str, Any] | None:
    """The freshness of every live worker that has samples (None: none has): their
    histograms summed, and the largest p50 and p99 among them -- the union's quantiles
    are never above the largest worker's, so with several workers this is a bound that
    hides no slow worker (each worker's own numbers are in its ``workers`` entry)."""
    live = [w for w in workers if not w["stale"] and w.get("freshness_p99_ms") is not None]
    if not live:
        return None
    counts: dict[Any, int] = {}
    for worker in live:
        for bucket in parse_histogram(worker.get("freshness_histogram") or {}):
            counts[bucket["le_ms"]] = counts.get(bucket["le_ms"], 0) + bucket["count"]
    newest = max(w["heartbeat_at"] for w in live)
    age = round(max(0.0, now - newest), 1)
    return {"p50_ms": max(w.get("freshness_p50_ms") or 0.0 for w in live),
            "p99_ms": max(w["freshness_p99_ms"] for w in live),
            "histogram": [{"le_ms": le, "count": n} for le, n in counts.items()],
            "age_s": age, "stale": age > STALE_FRESHNESS_S, "workers": len(live)}


def worker_entries(beats: dict[str, dict[str, str]], now: float) -> list[dict[str, Any]]:
    """One entry per live heartbeat hash (expired ones are gone), sorted by id."""
    workers = []
    for worker_id, beat in sorted(beats.items()):
        if not beat:
            continue
        entry: dict[str, Any] = {"id": worker_id, **beat}
        for field in _NUMERIC_BEAT_FIELDS:
            if field in beat:
                entry[field] = num(beat[field])
        entry["ready"] = beat.get("ready") == "1"
        if "behind" in beat:  # its last step found a backlog (a retrain waits for it)
            entry["behind"] = beat["behind"] == "1"
        raw = entry.pop("freshness_histogram", None)
        if raw:
            try:
                entry["freshness_histogram"] = orjson.loads(raw)
            except orjson.JSONDecodeError:
                pass
        hb = num(beat.get("heartbeat_at"))
        # A beat written after ``now`` was read (the worker beats during the read) is new.
        entry["heartbeat_age_s"] = round(max(0.0, now - hb), 1) if hb is not None else None
        entry["stale"] = hb is None or now - hb > STALE_AFTER_S
        workers.append(entry)
    return workers
