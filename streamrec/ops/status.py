"""``streamrec status``: one look at the whole pipeline, as a dict (for ``--json``) or text.

Gathers which broker answers (Apache Kafka or Tansu, its version and broker count),
topic end offsets, the worker group's committed offsets and lag, pipeline counters, the
live model and its age, worker heartbeats, Redis memory against its ``maxmemory`` (with an
alert near it), and which of the processes ``streamrec up`` recorded still run. Every part
degrades to nulls/zeros and an entry in ``errors`` instead of failing, so status is
usable exactly when something is off.

End offsets come from ``kafka_tools.high_watermarks`` (ListOffsets on Apache Kafka, the
fetch high watermark on Tansu, which answers ListOffsets "latest" too low).
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


def broker_status(settings: Settings) -> dict[str, Any]:
    """``{"kind", "version", "brokers"}`` of the broker at the bootstrap address; the
    embedded stack's own record gives the exact version of the broker it started."""
    from core.broker import describe_broker
    from streamrec.stack.embedded import load_state

    found = describe_broker(settings, fresh=True).to_dict()
    state = load_state(settings)
    rec = state.processes.get("kafka") if state else None
    if rec is not None and rec.version and rec.address == settings.kafka_bootstrap:
        found["version"] = rec.version
    return found


def kafka_status(settings: Settings) -> dict[str, Any]:
    """The broker, topics' end offsets and the worker group's committed offsets and lag."""
    from kafka import KafkaAdminClient

    from core.kafka_tools import client_options, committed_offsets, high_watermarks, topic_names
    from streamrec.stack.embedded import bootstrap_reachable

    if not bootstrap_reachable(settings.kafka_bootstrap):
        raise ConnectionError(f"cannot reach Kafka at {settings.kafka_bootstrap}")
    admin = KafkaAdminClient(**client_options(settings), request_timeout_ms=10000)
    try:
        existing = set(admin.list_topics())
    finally:
        admin.close()
    committed = committed_offsets(settings, settings.app_id)

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
        "broker": broker_status(settings),
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
    used, limit = _num(memory.get("used_memory")), _num(memory.get("maxmemory"))
    ratio = round(used / limit, 4) if used is not None and limit else None
    return {
        "processed": int(_num(stats.get("processed")) or 0),
        "dead_lettered": int(_num(stats.get("dead_lettered")) or 0),
        "stats": {k: _num(v) if _num(v) is not None else v for k, v in stats.items()},
        "model_version": version,
        "model_age_s": round(now - trained_at, 1) if trained_at is not None else None,
        "model": {k: _num(v) if _num(v) is not None else v for k, v in meta.items()},
        "freshness": None if p50 is None and p99 is None else {"p50_ms": p50, "p99_ms": p99},
        "workers": workers,
        "redis_memory_bytes": used,
        "redis_maxmemory_bytes": limit or None,
        "redis_maxmemory_policy": memory.get("maxmemory_policy"),
        "redis_memory_ratio": ratio,
        # Near maxmemory Redis refuses writes (noeviction): the worker stops consuming.
        "redis_memory_alert": ratio is not None and ratio >= settings.redis_memory_alert_ratio,
    }


def components_status(settings: Settings) -> dict[str, Any]:
    """The processes ``streamrec up`` recorded here, and whether each still runs (by
    component name; ``role`` is kafka-broker, tansu, redis, worker or api)."""
    from streamrec.stack.embedded import load_state

    state = load_state(settings)
    if state is None:
        return {}
    return {
        name: {"role": rec.role, "pid": rec.pid, "alive": rec.alive(),
               "address": rec.address, "log": rec.log}
        for name, rec in state.processes.items()
    }


def processes_of(components: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``processes`` list of ``status --json``: role, pid, alive."""
    return [{"role": c["role"], "pid": c["pid"], "alive": c["alive"]}
            for c in components.values()]


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
        "redis_maxmemory_bytes": None,
        "redis_maxmemory_policy": None,
        "redis_memory_ratio": None,
        "redis_memory_alert": False,
        "broker": {"kind": None, "version": None, "brokers": 0},
        "topics": {},
        "group": {"id": settings.app_id, "partitions": [], "lag_by_topic": {}},
        "stats": {},
        "components": {},
        "processes": [],
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
                result["processes"] = processes_of(found)
            else:
                result.update(found)
    result["ok"] = not result["errors"]
    return result


def _redis_lines(status: dict[str, Any]) -> list[str]:
    """Redis memory, against maxmemory when set, and the alert near it."""
    mem, limit = status["redis_memory_bytes"], status["redis_maxmemory_bytes"]
    text = f"{mem / 1048576:.1f} MiB used" if isinstance(mem, int | float) else "?"
    if limit:
        text += (f" of {limit / 1048576:.0f} MiB maxmemory ({status['redis_memory_ratio']:.0%},"
                 f" {status['redis_maxmemory_policy']})")
    lines = [f"Redis {status['redis_url']}: {text}"]
    if status["redis_memory_alert"]:
        lines.append("! Redis is near maxmemory: at the limit it refuses writes and the "
                     "worker stops consuming (raise maxmemory or free memory)")
    return lines


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

    broker = status["broker"]
    kind = {"apache-kafka": "Apache Kafka", "tansu": "Tansu"}.get(broker["kind"] or "", "?")
    version = f" {broker['version']}" if broker["version"] else ""
    count = broker["brokers"]
    out.append(f"Kafka {status['kafka_bootstrap']} ({kind}{version}, {count} broker"
               f"{'' if count == 1 else 's'})")
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
    out += _redis_lines(status)

    comps = status["components"]
    if comps:
        out.append("Processes started by `streamrec up`")
        rows = [[c.get("role", name), f"pid {c['pid']}",
                 "running" if c["alive"] else "NOT RUNNING", c["address"] or ""]
                for name, c in comps.items()]
        out += _table(rows)
    return "\n".join(out)
