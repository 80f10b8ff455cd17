"""``streamrec status``'s text: the processes table tells two workers (or API
processes) apart, as ``--json`` and the stack's messages do."""

from __future__ import annotations

from typing import Any

from streamrec.ops.status import format_status


def _status(components: dict[str, Any]) -> dict[str, Any]:
    return {"errors": {}, "broker": {"kind": "tansu", "version": "", "brokers": 1},
            "kafka_bootstrap": "127.0.0.1:9092", "topics": {},
            "group": {"id": "streamrec", "partitions": []}, "lag": 0, "processed": 0,
            "dead_lettered": 0, "freshness": None, "model_version": None, "workers": [],
            "redis_memory_bytes": None, "redis_maxmemory_bytes": None,
            "redis_url": "redis://127.0.0.1:6379/0", "redis_memory_alert": False,
            "components": components}


def test_two_workers_are_told_apart_in_the_processes_table() -> None:
    def proc(role: str, pid: int) -> dict[str, Any]:
        return {"role": role, "pid": pid, "alive": True, "address": ""}

    text = format_status(_status({"worker": proc("worker", 11), "worker-2": proc("worker", 12),
                                  "api": proc("api", 13), "api-2": proc("api", 14),
                                  "kafka": proc("tansu", 10)}))
    table = text.split("Processes started by `streamrec up`\n", 1)[1].splitlines()
    assert [line.strip().split("  ")[0] for line in table] == [
        "worker", "worker 2", "api", "api 2", "tansu"]


def test_workers_are_unknown_not_gone_while_redis_does_not_answer() -> None:
    # With redis-server stopped (SIGSTOP) `streamrec status` printed "Workers: none
    # running" beside a running worker process: their heartbeats could not be read.
    status = _status({})
    status["errors"] = {"redis": "TimeoutError: Timeout reading from socket"}
    text = format_status(status)
    assert "none running" not in text
    assert "Workers: unknown (their heartbeats are in Redis, which did not answer)" in text
    assert "Workers: none running" in format_status(_status({}))  # Redis answered: none


def test_lag_is_unknown_not_zero_while_kafka_cannot_be_read() -> None:
    # `streamrec status --json` said "lag": 0 beside errors.kafka: a script waiting for
    # `.lag == 0` (as `bench ingest --burst` did) took an unreadable Kafka for a drained
    # pipeline.
    from core.settings import Settings
    from streamrec.ops.status import collect_status

    status = collect_status(Settings(kafka_bootstrap="127.0.0.1:9",
                                     redis_url="redis://127.0.0.1:9/0"))
    assert "kafka" in status["errors"] and not status["ok"]
    assert status["lag"] is None
    text = format_status(status)
    assert "lag on events unknown (Kafka could not be read)" in text
    assert "lag on events 0" in format_status(_status({}))  # Kafka answered: none
