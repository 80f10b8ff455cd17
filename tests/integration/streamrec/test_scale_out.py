"""``streamrec up --workers N --api-processes M`` (and ``--broker kafka --brokers 3``) as a
user runs them: several workers split the partitions, several API processes share one
port, ``status --json`` lists every process, and ``up`` restarts exactly the one that
died while the others keep serving.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import httpx
import pytest

from streamrec.stack.probes import listens_on
from streamrec.stack.servers import pid_alive
from tests.conftest import java_missing
from tests.integration.streamrec.test_stack import Stack
from tests.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def _by_role(status: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    roles: dict[str, list[dict[str, Any]]] = {}
    for proc in status["processes"]:
        roles.setdefault(proc["role"], []).append(proc)
    return roles


def _partitions_split(stack: Stack, workers: int) -> dict[str, Any]:
    """Wait until ``workers`` live workers hold disjoint partitions covering all four."""
    status: dict[str, Any] = {}

    def split() -> bool:
        status.update(stack.status())
        live = [w for w in status["workers"] if not w["stale"] and w["ready"]]
        held = [str(w.get("partitions") or "") for w in live]
        parts = [p for h in held for p in h.split(",") if p]
        return (len(live) == workers and all(held)
                and sorted(parts) == ["0", "1", "2", "3"])

    wait_for(split, 90, f"{workers} workers splitting the 4 partitions", interval=0.5)
    return status


def test_workers_split_partitions_and_api_processes_share_the_port(stack: Stack) -> None:
    stack.up("--workers", "2", "--api-processes", "2")
    status = _partitions_split(stack, 2)
    roles = _by_role(status)
    assert [p["name"] for p in roles["worker"]] == ["worker", "worker-2"]
    assert [p["name"] for p in roles["api"]] == ["api", "api-2"]
    assert all(p["alive"] for p in status["processes"])
    port = int(stack.api_url.rpartition(":")[2])
    apis = [p["pid"] for p in roles["api"]]
    assert all(listens_on(pid, port) for pid in apis), "both API processes listen"

    # one API process dies: the other keeps answering on the same port
    os.kill(apis[0], signal.SIGKILL)
    wait_for(lambda: not pid_alive(apis[0]), 10, "the API process gone")
    with httpx.Client(base_url=stack.api_url, timeout=5) as http:
        for _ in range(20):
            assert http.get("/v1/popular?n=3").status_code == 200
    before = stack.pids()
    out = stack.up()  # keeps the shape: 2 workers, 2 API processes
    assert "the API (pid" in out and "is gone: starting it again" in out
    pids = stack.pids()
    assert pids["api-2"] == apis[1] and pids["api"] != apis[0]
    assert (pids["worker"], pids["worker-2"]) == (before["worker"], before["worker-2"])

    # a third worker joins: the partitions are split three ways, then back to one
    stack.up("--workers", "3")
    _partitions_split(stack, 3)
    out = stack.up("--workers", "1")
    assert "stopping the worker 3" in out and "stopping the worker 2" in out
    _partitions_split(stack, 1)


@pytest.mark.cluster
@pytest.mark.slow
@pytest.mark.timeout(600)  # beside the Kafka leg's other files, three brokers start slower
@pytest.mark.skipif(java_missing(), reason="Apache Kafka needs Java 17+ (no `java` here)")
def test_a_three_broker_kafka_cluster_survives_one_broker(stack: Stack) -> None:
    out = stack.up("--broker", "kafka", "--brokers", "3")
    assert "3 brokers" in out
    status = stack.status()
    assert status["broker"] == {"kind": "apache-kafka", "version": status["broker"]["version"],
                                "brokers": 3}
    assert [p["name"] for p in _by_role(status)["kafka-broker"]] == [
        "kafka", "kafka-2", "kafka-3"]
    assert len(status["kafka_bootstrap"].split(",")) == 3
    from core.settings import Settings
    from core.topics import admin_client

    admin = admin_client(Settings(kafka_bootstrap=status["kafka_bootstrap"]))
    try:
        described = admin.describe_topics(["events", "catalog", "events-dlq"])
        assert {len(p["replica_nodes"]) for t in described for p in t["partitions"]} == {3}
        from kafka.admin import ConfigResource, ConfigResourceType

        configs = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, "events")])["topic"]["events"]
        assert configs["min.insync.replicas"]["value"] == "2"
    finally:
        admin.close()

    node = stack.pids()["kafka-2"]
    os.kill(node, signal.SIGKILL)
    # acks=all still succeeds with two in-sync replicas (after at most a brief 503)
    with httpx.Client(base_url=stack.api_url, timeout=10) as http:
        def accepted() -> bool:
            resp = http.post("/v1/events", json={"event_id": "k-1", "type": "view",
                                                 "user_id": "k-u", "item_id": "k-i"})
            assert resp.status_code in (202, 503), resp.text
            return resp.status_code == 202
        wait_for(accepted, 30, "an event accepted with one broker down", interval=0.5)
    wait_for(lambda: stack.status(dead_ok=True)["broker"]["brokers"] == 2, 30,
             "the dead broker fenced")
    out = stack.up()
    assert "Kafka broker 2 (Apache Kafka)" in out and "starting it again" in out
    assert stack.pids()["kafka-2"] != node
    wait_for(lambda: stack.status()["broker"]["brokers"] == 3, 60, "three brokers again")
