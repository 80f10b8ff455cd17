"""``streamrec status``: one look at the whole pipeline, as a dict (for ``--json``) or text.

The pipeline's numbers (which broker answers, end offsets, lag, counters, freshness, dead
letters, the model and its history, worker heartbeats, Redis memory against
``maxmemory``, which of the processes ``streamrec up`` recorded still run) come from
:class:`core.pipeline_status.PipelineProbe`, the same code the API's dashboard shows them
with, so both always agree; this module adds the connection strings and the text
rendering. Every part degrades to nulls/zeros and an entry in ``errors`` instead of
failing, so status is usable exactly when something is off.
"""

from __future__ import annotations

from typing import Any

from core.pipeline_status import PipelineProbe
from core.settings import Settings


def lists_settled(status: dict[str, Any]) -> bool:
    """True when every live worker in ``status`` serves the current model and has run its
    refresh sweep for it to the end (``sweep_version`` is that model, nothing pending),
    so the stored lists are what a shopper sees a little after a retrain.

    ``sweep_pending`` alone is not enough: a worker starts the sweep for a new model
    with its next batch or idle tick, and until then it reports the new model with
    nothing pending (a test that read lists then found entities without one)."""
    live = [w for w in status.get("workers", []) if not w.get("stale")]
    version = status.get("model_version")
    return bool(live) and all(
        (w.get("model_version") or None) == version
        and (version is None or w.get("sweep_version") == version)
        and not w.get("sweep_pending") for w in live)


def collect_status(settings: Settings) -> dict[str, Any]:
    """Everything ``streamrec status`` shows. Never raises for an unreachable server:
    its fields stay null/zero and ``errors`` says why; ``lag`` is null (unknown) when
    Kafka could not be read."""
    from streamrec.stack.embedded import mask_url

    result: dict[str, Any] = {
        "kafka_bootstrap": settings.kafka_bootstrap,
        "redis_url": mask_url(settings.redis_url),
    }
    with PipelineProbe(settings) as probe:
        result.update(probe.collect(parallel=True))
        kafka_refusal = probe.kafka_refusal
    if not result["components"]:  # nothing `up` started here: say how to get a stack
        for part, env in (("kafka", "STREAMREC_KAFKA_BOOTSTRAP"),
                          ("redis", "STREAMREC_REDIS_URL")):
            if part in result["errors"]:
                result["errors"][part] = result["errors"][part].rstrip(".") + (
                    f"; no stack of `streamrec up` here: start one, or set {env}")
    # A refused login or certificate is configuration to fix: name it, without the hint
    # (the probe asked Kafka's handshake already; Redis's is asked here).
    from core.connections import redis_handshake_problem

    if kafka_refusal and "kafka" in result["errors"]:
        result["errors"]["kafka"] = kafka_refusal
    if "redis" in result["errors"]:
        result["errors"]["redis"] = redis_handshake_problem(settings) or result["errors"]["redis"]
    result["ok"] = not result["errors"]
    return result


def _redis_lines(status: dict[str, Any]) -> list[str]:
    """Redis memory, against maxmemory when set, and the alert near it."""
    mem, limit = status["redis_memory_bytes"], status["redis_maxmemory_bytes"]
    text = f"{mem / 1048576:.1f} MiB used" if isinstance(mem, int | float) else "?"
    shape = status.get("redis") or {}
    if limit:
        fullest = "fullest master " if shape.get("mode") == "cluster" else ""
        text += (f" of {limit / 1048576:.0f} MiB maxmemory ({fullest}"
                 f"{status['redis_memory_ratio']:.0%}, {status['redis_maxmemory_policy']})")
    kind = (f" (Redis Cluster: {shape.get('masters')} masters, {shape.get('nodes')} nodes)"
            if shape.get("mode") == "cluster" else "")
    lines = [f"Redis {status['redis_url']}{kind}: {text}"]
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


def _pipeline_line(status: dict[str, Any]) -> str:
    """Counters, rate and freshness in one line (the freshness's age once it is old)."""
    line = f"Pipeline: processed {status['processed']}, dead-lettered {status['dead_lettered']}"
    if status.get("events_per_s") is not None:
        line += f", {status['events_per_s']} events/s"
    fresh = status["freshness"]
    if fresh:
        line += f", freshness p50 {fresh['p50_ms']} ms / p99 {fresh['p99_ms']} ms"
        if fresh.get("stale"):  # no live samples since (core.pipeline_status)
            age = fresh.get("age_s")
            line += f" (published {_ago(age)})" if age is not None else " (age unknown)"
    return line


def _worker_lines(status: dict[str, Any]) -> list[str]:
    """The workers table: each worker's partitions, progress and the port its Prometheus
    metrics are served on (one per worker, to scrape each)."""
    if not status["workers"]:
        if "redis" in status["errors"]:  # heartbeats live in Redis: none read, none known
            return ["Workers: unknown (their heartbeats are in Redis, which did not answer)"]
        return ["Workers: none running"]
    rows = [["id", "pid", "ready", "partitions", "processed", "model", "metrics port",
             "last heartbeat"]]
    for w in status["workers"]:
        ready = "stale" if w["stale"] else ("yes" if w["ready"] else "no")
        if not w["stale"] and w.get("behind"):
            ready += ", behind"  # its last batch found a backlog (lists coalesced)
        rows.append([str(w["id"]), str(w.get("pid", "?")), ready,
                     str(w.get("partitions") or "-"),
                     str(w.get("processed", "?")), str(w.get("model_version") or "-"),
                     str(w.get("metrics_port") or "-"), _ago(w.get("heartbeat_age_s"))])
    return ["Workers", *_table(rows)]


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
    lag = "unknown (Kafka could not be read)" if status["lag"] is None else status["lag"]
    out.append(f"Consumer group {group['id']}: lag on events {lag}")
    if group["partitions"]:
        rows = [["topic", "partition", "end", "committed", "lag"]]
        for r in group["partitions"]:
            committed = "-" if r["committed"] is None else str(r["committed"])
            rows.append([r["topic"], str(r["partition"]), str(r["end_offset"]), committed,
                         str(r["lag"])])
        out += _table(rows)

    out.append(_pipeline_line(status))
    for dead in status.get("dead_letters", [])[:3]:
        out.append(f"  dead letter {dead.get('topic')}[{dead.get('partition')}]@"
                   f"{dead.get('offset')}: {dead.get('reason')}")
    if status["model_version"]:
        meta = status["model"]
        details = ", ".join(f"{meta[k]} {k.removeprefix('n_')}"
                            for k in ("n_users", "n_items", "n_events") if k in meta)
        out.append(f"Model {status['model_version']}: trained {_ago(status['model_age_s'])}"
                   + (f" ({details})" if details else ""))
    else:
        out.append("Model: none yet (streamrec train)")

    out += _worker_lines(status)
    out += _redis_lines(status)

    comps = status["components"]
    if comps:
        out.append("Processes started by `streamrec up`")
        rows = [[_numbered(c.get("role", name), name), f"pid {c['pid']}",
                 "running" if c["alive"] else "NOT RUNNING", c["address"] or ""]
                for name, c in comps.items()]
        out += _table(rows)
    return "\n".join(out)


def _numbered(role: str, name: str) -> str:
    """``role`` with the number of the recorded process ``name`` (``worker-2`` → ``worker
    2``), so two workers or API processes are told apart as in ``--json`` and messages."""
    head, _, number = name.rpartition("-")
    return f"{role} {number}" if head and number.isdigit() else role
