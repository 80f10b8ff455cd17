"""Operational records the worker writes and ``streamrec status`` and the dashboard read.

One place for their shapes and bounds, so writer (``stream/``) and readers
(:mod:`core.pipeline_status`) cannot drift apart:

* the freshness histogram of a worker's last samples (``stats:freshness``), with the same
  bucket bounds as the worker's Prometheus histogram;
* the last dead-lettered messages' reasons (``stats:dead-letters``): the reason and where
  the message came from, never its content (that stays in the dead-letter topic);
* the last trainings (``model:history``): a model's own ``model:{v}:meta`` hash is
  dropped with the version when the next one goes live;
* the worker registry (``stats:workers``): readers find the heartbeats without a SCAN
  over the whole keyspace, which costs one round trip per 100 keys of a big Redis;
* the events topic's end offsets when ``streamrec replay`` last reset the worker group
  (``replay:ends``, one field per partition, overwritten by the next replay): events
  below them are replayed, never freshness samples (:func:`replayed`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

#: Upper bounds (ms) of the freshness buckets; one more bucket, ``inf``, holds the rest.
#: The re-fold delay shares them: a re-fold coalesced while the worker is behind waits
#: ~30 s or more, so the buckets go on to two minutes (with 30 s the top bound, every
#: held run's re-fold p99 read "30,000", which said only "more than that").
FRESHNESS_BUCKETS_MS: tuple[int, ...] = (10, 25, 50, 100, 200, 300, 500, 750, 1000, 2000,
                                         5000, 10000, 30000, 60000, 120000)
#: Freshness measures live traffic: an event applied more than this long after its
#: arrival is not a freshness sample but old history being caught up on -- a backfill
#: stamped with event times (``streamrec load --via kafka``), or a worker that was away
#: for longer (consumer lag and heartbeats report that); nor is an event a ``streamrec
#: replay`` re-applies, however recent (:func:`replayed`). Such
#: events would otherwise fill the rolling p50/p99 with their age (years for the Taobao
#: file) and the histogram's top bucket; ``streamrec_catch_up_events_total`` counts them.
FRESHNESS_LIVE_S = 3600.0
#: Workers read ``replay:ends`` again this often (and at partition assignment).
REPLAY_ENDS_REFRESH_S = 5.0
#: Field of the bucket above the last bound.
INF = "inf"
#: Dead-letter reasons kept (newest first).
DEAD_LETTERS_KEPT = 20
#: Longest reason kept, in characters (reasons quote parts of hostile input).
REASON_MAX_CHARS = 300
#: Trainings kept in the history (newest first).
MODEL_HISTORY_KEPT = 20
#: Workers without a heartbeat for this long leave the registry.
WORKER_REGISTRY_HORIZON_S = 3600.0


def histogram_fields(counts: Sequence[int]) -> dict[str, int]:
    """The ``stats:freshness`` hash of per-bucket counts (one per bound, then ``inf``)."""
    if len(counts) != len(FRESHNESS_BUCKETS_MS) + 1:
        raise ValueError(f"expected {len(FRESHNESS_BUCKETS_MS) + 1} counts, got {len(counts)}")
    names = [str(bound) for bound in FRESHNESS_BUCKETS_MS] + [INF]
    return {name: int(n) for name, n in zip(names, counts, strict=True)}


def parse_histogram(raw: Mapping[Any, Any]) -> list[dict[str, Any]]:
    """``[{"le_ms": bound or None (inf), "count": n}, ...]`` in bucket order, from the hash
    (empty when nothing was published)."""
    if not raw:
        return []
    fields = {_text(k): v for k, v in raw.items()}
    out: list[dict[str, Any]] = []
    for bound in (*FRESHNESS_BUCKETS_MS, None):
        value = fields.get(INF if bound is None else str(bound))
        try:
            count = int(value) if value is not None else 0
        except (TypeError, ValueError):
            count = 0
        out.append({"le_ms": bound, "count": count})
    return out


def replay_ends_fields(ends: Mapping[int, int]) -> dict[str, int]:
    """The ``replay:ends`` hash: partition → the events topic's end offset at the reset."""
    return {str(int(partition)): int(end) for partition, end in ends.items()}


def parse_replay_ends(raw: Mapping[Any, Any]) -> dict[int, int]:
    """Partition → end offset from the ``replay:ends`` hash (unreadable fields skipped;
    empty when no replay recorded any)."""
    out: dict[int, int] = {}
    for field, value in (raw or {}).items():
        try:
            out[int(_text(field))] = int(_text(value))
        except ValueError:
            continue
    return out


def replayed(ends: Mapping[int, int], partition: int, offset: int) -> bool:
    """Whether the event at ``offset`` of ``partition`` is one a replay re-applies: it was
    in the log when ``streamrec replay`` reset the group (below that partition's recorded
    end). Such events count as catch-up, not freshness, whenever they arrived; events
    after the reset -- a backlog the worker was away for included -- stay samples."""
    end = ends.get(partition)
    return end is not None and offset < end


def dead_letter_entry(*, reason: str, topic: str, partition: int, offset: int,
                      at: float) -> bytes:
    """One ``stats:dead-letters`` entry (JSON)."""
    return orjson.dumps({"reason": reason[:REASON_MAX_CHARS], "topic": topic,
                         "partition": partition, "offset": offset, "at": round(at, 3)})


def model_history_entry(version: str, facts: Mapping[str, Any]) -> bytes:
    """One ``model:history`` entry (JSON): the version and its numeric facts."""
    entry: dict[str, Any] = {"version": version}
    for name, value in facts.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            entry[name] = value
    return orjson.dumps(entry)


def parse_entries(raw: Iterable[Any]) -> list[dict[str, Any]]:
    """JSON list entries as dicts (unreadable ones skipped: status never fails on them)."""
    out = []
    for item in raw or ():
        try:
            value = orjson.loads(item)
        except (orjson.JSONDecodeError, TypeError):
            continue
        if isinstance(value, dict):
            out.append(value)
    return out


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
