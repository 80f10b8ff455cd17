"""``streamrec up``, events, ``down``, ``up`` again, through the CLI as a user runs it.

With ``--broker kafka`` (Apache Kafka with its log in the state directory, Redis with an
append-only file) the second stack serves the same item stats, the same lists and the
same model version, with lag 0. With Tansu (the default) ``up`` says beforehand, in a
warning line, that the log is in memory, and after ``down`` everything is gone.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import httpx
import pytest

from streamrec.ops.status import lists_settled
from streamrec.stack import kafka_broker
from streamrec.stack.servers import pid_alive
from tests.conftest import java_missing
from tests.integration.streamrec.test_stack import Stack
from tests.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

USERS = [f"du{i}" for i in range(24)]
ITEMS = [f"sku-{i}" for i in range(16)]


def _down(stack: Stack) -> str:
    res = stack.cli("down", timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def _feed(http: httpx.Client) -> int:
    """A catalog and a few views, carts and purchases per shopper; returns the events."""
    items = [{"item_id": item, "name": f"Thing {i}", "price": 5.0 + i, "in_stock": True}
             for i, item in enumerate(ITEMS)]
    assert http.post("/v1/items", json={"items": items}).status_code == 202
    events: list[dict[str, Any]] = []
    for u, user in enumerate(USERS):
        for k in range(6):
            item = ITEMS[(u * 3 + k * (1 + u % 4)) % len(ITEMS)]
            kind = "purchase" if k == 5 and u % 3 == 0 else (
                "add_to_cart" if k == 4 else "view")
            events.append({"event_id": f"d-{u}-{k}", "type": kind, "user_id": user,
                           "item_id": item})
    assert http.post("/v1/events", json={"events": events}).status_code == 202
    return len(events)


def _observe(http: httpx.Client) -> dict[str, Any]:
    """Everything a shop sees, without the per-answer recommendation ids."""

    def get(path: str) -> Any:
        resp = http.get(path)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        body.pop("recommendation_id", None)
        return body

    return {
        "stats": {i: get(f"/v1/admin/items/{i}/stats") for i in ITEMS},
        "home": {u: get(f"/v1/users/{u}/recommendations?n=10") for u in USERS},
        "similar": {i: get(f"/v1/items/{i}/similar?n=5") for i in ITEMS[:6]},
        "popular": get("/v1/popular?n=20"),
        "trending": [e["item_id"] for e in get("/v1/trending?n=20")["items"]],
    }


def _settled(stack: Stack, processed: int) -> dict[str, Any]:
    """Wait until every event is processed, lag is 0 and the worker has re-listed its
    shoppers for the live model; the status then."""
    status: dict[str, Any] = {}

    def done() -> bool:
        status.update(stack.status())
        return status["processed"] >= processed and status["lag"] == 0 and lists_settled(status)

    wait_for(done, 120, "events processed, lag 0, lists re-listed", interval=0.5)
    return status


@pytest.mark.skipif(java_missing(), reason="Apache Kafka needs Java 17+ (no `java` here)")
def test_kafka_keeps_the_log_the_model_and_every_list(stack: Stack) -> None:
    out = stack.up("--broker", "kafka")
    assert "Apache Kafka" in out and "append-only file" in out
    assert "in memory" not in out
    with httpx.Client(base_url=stack.api_url, timeout=10) as http:
        sent = _feed(http)
        _settled(stack, sent)
        train = stack.cli("train", "--timeout", "60", timeout=180)
        assert train.returncode == 0, train.stdout + train.stderr
        before_status = _settled(stack, sent)
        before = _observe(http)
    assert before_status["model_version"] and before["popular"]["items"]
    assert sum(s["views"] for s in before["stats"].values()) > 0
    assert before_status["broker"] == {"kind": "apache-kafka", "brokers": 1,
                                       "version": kafka_broker.pinned_version()}
    assert {p["role"] for p in before_status["processes"]} == {
        "kafka-broker", "redis", "worker", "api"}
    assert all(p["alive"] for p in before_status["processes"])

    down = _down(stack)
    assert "gone" not in down
    assert not (stack.cwd / ".streamrec" / "stack.json").exists()

    stack.up("--broker", "kafka")
    after_status = _settled(stack, sent)
    with httpx.Client(base_url=stack.api_url, timeout=10) as http:
        after = _observe(http)
    assert after_status["model_version"] == before_status["model_version"]
    assert after_status["processed"] == before_status["processed"]
    assert after_status["lag"] == 0
    assert after_status["topics"]["events"]["total"] == before_status["topics"]["events"][
        "total"]
    assert after["stats"] == before["stats"]
    assert after["popular"] == before["popular"]
    assert after["similar"] == before["similar"]
    assert after["trending"] == before["trending"]
    assert after["home"] == before["home"]


def test_tansu_says_beforehand_and_loses_everything(stack: Stack) -> None:
    out = stack.up()
    assert "warning: the embedded Tansu broker keeps the log in memory" in out
    with httpx.Client(base_url=stack.api_url, timeout=10) as http:
        sent = _feed(http)
        status = _settled(stack, sent)
        assert status["broker"]["kind"] == "tansu"
        assert sum(s["views"] for s in _observe(http)["stats"].values()) > 0
    assert "gone" in _down(stack)

    again = stack.up()
    assert "in memory" in again
    status = stack.status()
    assert status["processed"] == 0 and status["topics"]["events"]["total"] == 0
    with httpx.Client(base_url=stack.api_url, timeout=10) as http:
        assert sum(s["views"] for s in _observe(http)["stats"].values()) == 0



def _answers(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=0.2):
            return True
    except OSError:
        return False


def _watch_overlap(worker_pid: int, redis_address: str, found: list[str],
                   done: threading.Event) -> None:
    """Until ``done``: note when the old worker still runs while a Redis answers again on
    the port of the one it used, after that one went away (the new Redis it can write)."""
    went_away = False
    while not done.is_set() and pid_alive(worker_pid):
        up = _answers(redis_address)
        went_away = went_away or not up
        if went_away and up:
            found.append(f"worker {worker_pid} still ran beside the new Redis")
            return
        time.sleep(0.02)


@pytest.mark.skipif(java_missing(), reason="Apache Kafka needs Java 17+ (no `java` here)")
def test_switching_tansu_to_kafka_carries_nothing_over(stack: Stack) -> None:
    """README's order on a running demo: `up --broker kafka` replaces Tansu and the
    memory-only Redis (on the same port). The old worker must be gone before the new
    Redis answers, or its heartbeat lands there: the new stack showed the freshness of
    events its log never had, beside `processed 0`."""
    stack.up()
    with httpx.Client(base_url=stack.api_url, timeout=10) as http:
        _settled(stack, _feed(http))
    old_redis = stack.state()["processes"]["redis"]["address"]
    found: list[str] = []
    done = threading.Event()
    watch = threading.Thread(target=_watch_overlap,
                             args=(stack.pids()["worker"], old_redis, found, done))
    watch.start()
    try:
        out = stack.up("--broker", "kafka")
    finally:
        done.set()
        watch.join()
    assert "switching the embedded broker from Tansu to Apache Kafka: stopping it" in out
    assert stack.state()["processes"]["redis"]["address"] == old_redis  # the same port
    assert found == []
    status = stack.status()
    assert status["broker"]["kind"] == "apache-kafka"
    assert status["processed"] == 0 and status["topics"]["events"]["total"] == 0
    assert status["freshness"] is None, status["freshness"]
