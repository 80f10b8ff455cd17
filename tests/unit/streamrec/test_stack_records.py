"""Process records name their role, and status renders the Redis memory alert."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.settings import Settings
from core.stack_processes import exact_broker_version, processes_of
from streamrec.ops.status import _redis_lines
from streamrec.stack import infra
from streamrec.stack.records import ProcessRecord, StackState


def test_roles_and_labels() -> None:
    kafka = ProcessRecord("kafka", 1, "k.log", kind="apache-kafka", version="4.3.2")
    old = ProcessRecord("kafka", 2, "t.log")  # a record from before the broker choice
    assert (kafka.role, kafka.label) == ("kafka-broker", "Kafka broker (Apache Kafka)")
    assert (old.role, old.broker_kind) == ("tansu", "tansu")
    assert ProcessRecord("worker", 3, "w.log").role == "worker"
    assert infra.redis_kind(kafka.broker_kind) == "aof"
    assert infra.redis_kind(old.broker_kind) == "memory"
    assert infra.stop_timeout(kafka, 10) >= 60 and infra.stop_timeout(old, 10) == 10


def test_new_record_fields_round_trip(tmp_path: Path) -> None:
    state = StackState(processes={"kafka": ProcessRecord(
        "kafka", 1, "k.log", address="127.0.0.1:9", kind="apache-kafka", version="4.3.2",
        control_address="127.0.0.1:10")})
    again = StackState.from_dict(state.to_dict())
    assert again.processes["kafka"].control_address == "127.0.0.1:10"
    assert again.processes["kafka"].port() == 9


def test_processes_and_memory_alert() -> None:
    comps = {"redis": {"role": "redis", "pid": 5, "alive": True, "address": "", "log": ""}}
    assert processes_of(comps) == [{"name": "redis", "role": "redis", "pid": 5,
                                    "alive": True, "address": ""}]
    status: dict[str, Any] = {
        "redis_url": "redis://x", "redis_memory_bytes": 950 * 1048576,
        "redis_maxmemory_bytes": 1000 * 1048576, "redis_memory_ratio": 0.95,
        "redis_maxmemory_policy": "noeviction", "redis_memory_alert": True}
    lines = _redis_lines(status)
    assert "950.0 MiB used of 1000 MiB maxmemory (95%, noeviction)" in lines[0]
    assert lines[1].startswith("! Redis is near maxmemory")
    # A cluster: bytes summed over 3 masters, the ratio is the fullest master's.
    cluster = {**status, "redis_memory_bytes": 1100 * 1048576,
               "redis_maxmemory_bytes": 3000 * 1048576, "redis_memory_ratio": 0.93,
               "redis": {"mode": "cluster", "nodes": 6, "masters": 3}}
    lines = _redis_lines(cluster)
    assert "1100.0 MiB used of 3000 MiB maxmemory (fullest master 93%, noeviction)" in lines[0]
    assert lines[1].startswith("! Redis is near maxmemory")


def test_several_processes_of_a_component_have_numbered_records() -> None:
    from streamrec.stack.records import member_name, members, split_name, start_order

    assert [member_name("kafka", i) for i in (1, 2, 3)] == ["kafka", "kafka-2", "kafka-3"]
    assert split_name("worker-3") == ("worker", 3) and split_name("api") == ("api", 1)
    node = ProcessRecord("kafka-2", 1, "k.log", kind="apache-kafka")
    assert (node.component, node.index, node.role) == ("kafka", 2, "kafka-broker")
    assert node.label == "Kafka broker 2 (Apache Kafka)"
    assert ProcessRecord("api-2", 1, "a.log").label == "API 2"
    procs = {n: ProcessRecord(n, 1, "x") for n in ("api-2", "worker", "api", "kafka-3",
                                                    "kafka")}
    assert [r.name for r in members(procs, "api")] == ["api", "api-2"]
    assert sorted(procs, key=start_order) == ["kafka", "kafka-3", "worker", "api", "api-2"]


def test_a_kafka_cluster_replicates_across_three_nodes(tmp_path: Path) -> None:
    from streamrec.stack.kafka_cluster import node_dir, plan_specs, replication_for

    assert replication_for(1) == (1, 1)
    assert replication_for(2) == (2, 1)
    assert replication_for(3) == (3, 2) and replication_for(5) == (3, 2)
    assert node_dir(tmp_path, 1, 1) == tmp_path / "kafka"  # a single node: as before
    assert node_dir(tmp_path, 2, 3) == tmp_path / "kafka" / "node-2"
    specs = plan_specs({2: (9002, 9102)}, 3)
    assert [s.node_id for s in specs] == [1, 2, 3]
    assert (specs[1].port, specs[1].controller_port) == (9002, 9102)
    assert len({s.port for s in specs} | {s.controller_port for s in specs}) == 6


def test_old_freshness_says_how_old_it_is() -> None:
    """A stopped worker's last freshness stays in Redis: status shows its age."""
    from streamrec.ops.status import _pipeline_line

    status: dict[str, Any] = {"processed": 5, "dead_lettered": 0, "events_per_s": 0.0,
                              "freshness": {"p50_ms": 40.0, "p99_ms": 90.0, "age_s": 2.0,
                                            "stale": False}}
    assert _pipeline_line(status).endswith("freshness p50 40.0 ms / p99 90.0 ms")
    status["freshness"].update(age_s=2400.0, stale=True)
    assert _pipeline_line(status).endswith("p99 90.0 ms (published 40m ago)")
    status["freshness"].update(age_s=None)  # published by a worker that did not stamp it
    assert _pipeline_line(status).endswith("p99 90.0 ms (age unknown)")


def test_a_dead_embedded_broker_keeps_its_kind() -> None:
    """With the embedded broker killed nothing answers ApiVersions, but ``up`` recorded
    which broker it started: ``broker.kind`` stays "apache-kafka" | "tansu" (issue 11),
    not null, beside the version the record gives."""
    settings = Settings(kafka_bootstrap="127.0.0.1:29443")
    for role, kind in (("kafka-broker", "apache-kafka"), ("tansu", "tansu")):
        broker: dict[str, Any] = {"kind": None, "version": None, "brokers": 0}
        components = {"kafka": {"role": role, "version": "4.3.2", "address": "127.0.0.1:29443",
                                "alive": False}}
        exact_broker_version(settings, broker, components)
        assert broker == {"kind": kind, "version": "4.3.2", "brokers": 0}
    broker = {"kind": "apache-kafka", "version": "4.0", "brokers": 1}  # one that answers
    exact_broker_version(settings, broker, {"kafka": {"role": "tansu", "version": None,
                                                      "address": "127.0.0.1:29443"}})
    assert broker["kind"] == "apache-kafka"


def test_status_names_each_workers_metrics_port() -> None:
    """docs/operations.md: each worker serves metrics on a port of its own, and
    `streamrec status` shows it per worker (it was in --json only)."""
    from streamrec.ops.status import _worker_lines

    worker = {"id": "w1", "pid": 7, "ready": True, "stale": False, "partitions": "0,2",
              "processed": 5, "model_version": "", "heartbeat_age_s": 1.0}
    lines = _worker_lines({"workers": [{**worker, "metrics_port": 32362},
                                       {**worker, "id": "w2", "metrics_port": 21882}]})
    assert "metrics port" in lines[1]
    assert "32362" in lines[2] and "21882" in lines[3]
    # a worker whose last batch found a backlog says so (a due retrain waits for it)
    lines = _worker_lines({"workers": [{**worker, "behind": True}, worker]})
    assert "yes, behind" in lines[2] and "behind" not in lines[3]


def test_the_stop_timeout_is_defined_once() -> None:
    """``up``'s restarts, ``down`` and the children's stop share one SIGTERM grace
    (``streamrec.stack.children.STOP_TIMEOUT_S``): plan and embedded each kept a copy."""
    import ast

    root = Path(__file__).resolve().parents[3] / "streamrec"
    defined = sorted(str(path.relative_to(root)) for path in root.rglob("*.py")
                     for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                     if isinstance(node, ast.Assign) and any(
                         getattr(t, "id", None) == "STOP_TIMEOUT_S" for t in node.targets))
    assert defined == ["stack/children.py"]


def test_up_starts_one_worker_per_core_up_to_the_partitions(monkeypatch: Any,
                                                             isolated_env: None) -> None:
    from core import stack_settings
    from streamrec.stack.embedded import _wanted_count

    monkeypatch.setattr(stack_settings.os, "sched_getaffinity", lambda _pid: {0, 1, 2, 3, 4})
    fresh, running = StackState(), StackState(processes={
        "worker": ProcessRecord("worker", 1, "w.log"),
        "worker-2": ProcessRecord("worker-2", 2, "w2.log")})
    assert _wanted_count(Settings(topic_partitions=4), fresh, "workers", "worker") == 4
    assert _wanted_count(Settings(topic_partitions=8), fresh, "workers", "worker") == 5
    monkeypatch.setattr(stack_settings.os, "sched_getaffinity", lambda _pid: {0})
    assert _wanted_count(Settings(), fresh, "workers", "worker") == 1
    # a plain `up` keeps the running stack's shape; a given count wins
    assert _wanted_count(Settings(), running, "workers", "worker") == 2
    assert _wanted_count(Settings(workers=3), running, "workers", "worker") == 3
    assert _wanted_count(Settings(workers=3), fresh, "workers", "worker") == 3
    assert _wanted_count(Settings(), fresh, "api_processes", "api") == 1
