"""``streamrec status``: one look at the whole pipeline, as a dict (for ``--json``) or text.

Gathers topic end offsets, the worker group's committed offsets and lag, pipeline
counters, the live model and its age, worker heartbeats, Redis memory, and which of the
processes ``streamrec up`` recorded still run. Every part degrades to nulls/zeros and an
entry in ``errors`` instead of failing, so status is usable exactly when something is off.

End offsets come from fetch high watermarks (``kafka_tools.high_watermarks``) because
Tansu answers ListOffsets "latest" too low.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from core.redis_keys import RedisKeys
from core.settings import Settings

STALE_AFTER_S = 6.0


def _num(value: Any) -> int | float | None:
    """Parse a Redis string as int (or float); None when absent or not a number."""
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() else number


def _group_offsets(admin: Any, group: str) -> dict[Any, int]:
    """Committed offset per TopicPartition of ``group`` (kafka-python 2.x and 3.x)."""
    if hasattr(admin, "list_group_offsets"):
        raw = admin.list_group_offsets({group: None}).get(group, {})
    else:  # kafka-python < 3
        raw = admin.list_consumer_group_offsets(group)
    return {tp: int(meta.offset) for tp, meta in raw.items()}


def kafka_status(settings: Settings) -> dict[str, Any]:
    """Topics' end offsets and the worker group's committed offsets and lag."""
    from kafka import KafkaAdminClient

    from core.kafka_tools import client_options, high_watermarks, topic_names
    from streamrec.stack.embedded import bootstrap_reachable

    if not bootstrap_reachable(settings.kafka_bootstrap):
        raise ConnectionError(f"cannot reach Kafka at {settings.kafka_bootstrap}")
    admin = KafkaAdminClient(**client_options(settings), request_timeout_ms=10000)
    try:
        existing = set(admin.list_topics())
        committed = _group_offsets(admin, settings.app_id)
    finally:
        admin.close()

    wanted = topic_names(settings)
    group_topics = sorted({tp.topic for tp in committed} - set(wanted))
    present = [t for t in wanted + group_topics if t in existing]
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(present)))) as pool:
        ends = dict(zip(present, pool.map(lambda t: high_watermarks(settings, t), present),
                        strict=True))

    topics: dict[str, Any] = {}
    for name in wanted + group_topics:
        marks = ends.get(name, {})
        topics[name] = {
            "exists": name in existing,
            "partitions": len(marks),
            "end_offsets": [marks[p] for p in sorted(marks)],
            "total": sum(marks.values()),
        }

    rows: list[dict[str, Any]] = []
    lag_by_topic: dict[str, int] = {}
    group_topic_names = {tp.topic for tp in committed}
    for name in present:
        if name != settings.topic_events and name not in group_topic_names:
            continue
        for partition, end in sorted(ends[name].items()):
            offset = next((o for tp, o in committed.items()
                           if tp.topic == name and tp.partition == partition), -1)
            # No commit yet: the group will start at the beginning, so all of it is lag.
            lag = max(0, end - max(offset, 0))
            rows.append({"topic": name, "partition": partition, "end_offset": end,
                         "committed": offset if offset >= 0 else None, "lag": lag})
            lag_by_topic[name] = lag_by_topic.get(name, 0) + lag
    return {
        "topics": topics,
        "group": {"id": settings.app_id, "partitions": rows, "lag_by_topic": lag_by_topic},
        "lag": lag_by_topic.get(settings.topic_events, 0),
    }


def redis_status(settings: Settings) -> dict[str, Any]:
    """Pipeline counters, the live model, worker heartbeats and memory from Redis."""
    import redis

    keys = RedisKeys()
    client: Any = redis.Redis.from_url(settings.redis_url, socket_timeout=3.0,
                                       socket_connect_timeout=3.0, decode_responses=True)
    try:
        stats = client.hgetall(keys.stats)
        version = client.get(keys.model_current)
        meta = client.hgetall(keys.model_meta(version)) if version else {}
        prefix = keys.worker("")
        beats = {k[len(prefix):]: client.hgetall(k)
                 for k in client.scan_iter(match=keys.worker_pattern, count=100)}
        memory = client.info("memory")
    finally:
        client.close()

    now = time.time()
    workers = []
    for worker_id, beat in sorted(beats.items()):
        if not beat:
            continue
        entry: dict[str, Any] = {"id": worker_id}
        for field, value in beat.items():
            entry[field] = value
        for field in ("pid", "processed", "metrics_port", "started_at", "heartbeat_at",
                      "sweep_pending"):
            if field in beat:
                entry[field] = _num(beat[field])
        entry["ready"] = beat.get("ready") == "1"
        hb = _num(beat.get("heartbeat_at"))
        entry["heartbeat_age_s"] = round(now - hb, 1) if hb is not None else None
        # Heartbeats refresh every 2 s and expire after ~15 s: older than 6 s = likely dead.
        entry["stale"] = hb is None or now - hb > STALE_AFTER_S
        workers.append(entry)

    trained_at = _num(meta.get("trained_at"))
    p50, p99 = _num(stats.get("freshness_p50_ms")), _num(stats.get("freshness_p99_ms"))
    return {
        "processed": int(_num(stats.get("processed")) or 0),
        "dead_lettered": int(_num(stats.get("dead_lettered")) or 0),
        "stats": {k: _num(v) if _num(v) is not None else v for k, v in stats.items()},
        "model_version": version,
        "model_age_s": round(now - trained_at, 1) if trained_at is not None else None,
        "model": {k: _num(v) if _num(v) is not None else v for k, v in meta.items()},
        "freshness": None if p50 is None and p99 is None else {"p50_ms": p50, "p99_ms": p99},
        "workers": workers,
        "redis_memory_bytes": _num(memory.get("used_memory")),
    }


def components_status(settings: Settings) -> dict[str, Any]:
    """The processes ``streamrec up`` recorded here, and whether each still runs."""
    from streamrec.stack.embedded import load_state

    state = load_state(settings)
    if state is None:
        return {}
    return {
        name: {"pid": rec.pid, "alive": rec.alive(), "address": rec.address, "log": rec.log}
        for name, rec in state.processes.items()
    }


def collect_status(settings: Settings) -> dict[str, Any]:
    """Everything ``streamrec status`` shows. Never raises for an unreachable server:
    its fields stay null/zero and ``errors`` says why."""
    from streamrec.stack.embedded import mask_url

    result: dict[str, Any] = {
        "kafka_bootstrap": settings.kafka_bootstrap,
        "redis_url": mask_url(settings.redis_url),
        "lag": 0,
        "processed": 0,
        "dead_lettered": 0,
        "model_version": None,
        "model_age_s": None,
        "model": {},
        "freshness": None,
        "workers": [],
        "redis_memory_bytes": None,
        "topics": {},
        "group": {"id": settings.app_id, "partitions": [], "lag_by_topic": {}},
        "stats": {},
        "components": {},
        "errors": {},
    }
    parts = (("kafka", kafka_status), ("redis", redis_status),
             ("components", components_status))
    with ThreadPoolExecutor(max_workers=len(parts)) as pool:
        futures = {name: pool.submit(fn, settings) for name, fn in parts}
        for name, future in futures.items():
            try:
                found = future.result()
            except Exception as exc:  # noqa: BLE001 - reported, not raised
                result["errors"][name] = f"{type(exc).__name__}: {exc}"
                continue
            if name == "components":
                result["components"] = found
            else:
                result.update(found)
    result["ok"] = not result["errors"]
    return result


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def _table(rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in rows]


def format_status(status: dict[str, Any]) -> str:
    """Human-readable rendering of ``collect_status``'s result."""
    out: list[str] = []
    for part, message in status["errors"].items():
        out.append(f"! {part}: {message}")

    out.append(f"Kafka {status['kafka_bootstrap']}")
    topics = status["topics"]
    if topics:
        rows = [["topic", "partitions", "end offsets", "total"]]
        for name, info in topics.items():
            ends = " ".join(str(e) for e in info["end_offsets"]) or "-"
            rows.append([name, str(info["partitions"]) if info["exists"] else "missing",
                         ends, str(info["total"])])
        out += _table(rows)
    group = status["group"]
    out.append(f"Consumer group {group['id']}: lag on events {status['lag']}")
    if group["partitions"]:
        rows = [["topic", "partition", "end", "committed", "lag"]]
        for r in group["partitions"]:
            committed = "-" if r["committed"] is None else str(r["committed"])
            rows.append([r["topic"], str(r["partition"]), str(r["end_offset"]), committed,
                         str(r["lag"])])
        out += _table(rows)

    line = f"Pipeline: processed {status['processed']}, dead-lettered {status['dead_lettered']}"
    fresh = status["freshness"]
    if fresh:
        line += f", freshness p50 {fresh['p50_ms']} ms / p99 {fresh['p99_ms']} ms"
    out.append(line)
    if status["model_version"]:
        meta = status["model"]
        details = ", ".join(f"{meta[k]} {k.removeprefix('n_')}"
                            for k in ("n_users", "n_items", "n_events") if k in meta)
        out.append(f"Model {status['model_version']}: trained {_ago(status['model_age_s'])}"
                   + (f" ({details})" if details else ""))
    else:
        out.append("Model: none yet (streamrec train)")

    if status["workers"]:
        out.append("Workers")
        rows = [["id", "pid", "ready", "processed", "model", "last heartbeat"]]
        for w in status["workers"]:
            ready = "stale" if w["stale"] else ("yes" if w["ready"] else "no")
            rows.append([str(w["id"]), str(w.get("pid", "?")), ready,
                         str(w.get("processed", "?")), str(w.get("model_version") or "-"),
                         _ago(w.get("heartbeat_age_s"))])
        out += _table(rows)
    else:
        out.append("Workers: none running")
    mem = status["redis_memory_bytes"]
    mem_text = f"{mem / 1048576:.1f} MiB used" if isinstance(mem, int | float) else "?"
    out.append(f"Redis {status['redis_url']}: {mem_text}")

    comps = status["components"]
    if comps:
        out.append("Processes started by `streamrec up`")
        rows = [[name, f"pid {c['pid']}", "running" if c["alive"] else "NOT RUNNING",
                 c["address"] or ""] for name, c in comps.items()]
        out += _table(rows)
    return "\n".join(out)
