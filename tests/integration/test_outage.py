"""Outages of Redis and of the broker, with real processes on real servers.

* Redis flushed → the worker notices the missing sentinel and replays the log: counts,
  popular and shoppers' lists come back exactly; ``streamrec rebuild`` does the same
  with the worker stopped.
* Redis back from an older copy of itself (sentinel included) → caught by the applied
  offsets, at worker start and under a running worker, and rebuilt: never stale.
* Redis restarted empty (its own redis-server, killed and started on the same port) → the
  API answers from its fallback snapshot meanwhile (never a 5xx), refuses tracking writes
  it cannot count against the rate limits (503 + Retry-After + their ids), the retried
  batch is counted once, and everything is rebuilt.
* Redis of another log: ``test_outage_other_log.py``.
* Broker stopped → ``POST /v1/events`` gets 503 + Retry-After, the worker logs the outage
  once; a fresh broker on the same address → API and worker reconnect by themselves (the
  worker says so once) and new events flow again.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from core import kafka_tools
from core.net import free_port, wait_for_port
from core.redis_keys import RedisKeys
from core.settings import Settings, env_for_child
from streamrec.stack.servers import ServerProcess, spawn, start_redis, stop_pid
from tests.conftest import TEST_BROKER, start_test_broker
from tests.integration.conftest import WORKER_CMD, wait_worker_ready
from tests.polling import wait_for
from tests.redis_state import dump_all, restore_all

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.broker]
K = RedisKeys()
ADMIN, TRACK, READ = "out-admin-0123456789", "out-track-0123456789", "out-read-01234567890"


def envelopes(n: int, tag: str) -> list[tuple[bytes, bytes]]:
    """``n`` single-event envelopes over 20 users and 12 items (deterministic)."""
    now = time.time()
    out = []
    for i in range(n):
        user = f"{tag}u{i % 20}"
        event = {"event_id": f"{tag}-{i}", "type": "view" if i % 7 else "add_to_cart",
                 "user_id": user, "item_id": f"it{(i * 5) % 12}", "ts": now + i * 1e-3}
        out.append((user.encode(), orjson.dumps({"v": 1, "events": [event]})))
    return out


def produce(settings: Settings, records: list[tuple[bytes, bytes]]) -> None:
    producer = KafkaProducer(**kafka_tools.client_options(settings), acks="all")
    for key, value in records:
        producer.send(settings.topic_events, key=key, value=value)
    producer.flush()
    producer.close()


def state_of(client: redis.Redis, users: list[str]) -> dict[str, Any]:
    """What must survive: exact counts, distinct users, popularity, shoppers' lists."""
    items = [f"it{i}" for i in range(12)]
    return {
        "stats": {i: client.hgetall(K.item_stats(i)) for i in items},
        "users": {i: client.scard(K.item_users(i)) for i in items},
        # Scores rounded: a replay sums the same weights in another order (float noise),
        # which may swap two items whose scores are equal to 6 places.
        "popular": {m: round(s, 6) for m, s in client.zrevrange(K.popular, 0, -1,
                                                                withscores=True)},
        "recent": {u: client.get(K.user_recent(u)) for u in users},
    }


def start_api(settings: Settings, log: Path) -> tuple[subprocess.Popen[bytes], httpx.Client]:
    api = spawn([sys.executable, "-m", "streamrec.cli", "api"], log_path=log,
                env=env_for_child(settings))
    wait_for_port("127.0.0.1", settings.api_port, timeout=30, proc=api)
    return api, httpx.Client(base_url=f"http://127.0.0.1:{settings.api_port}", timeout=10)


def _snapshot_refreshes(http: httpx.Client) -> float:
    """The API's count of fallback snapshot refreshes (``/metrics``)."""
    families = text_string_to_metric_families(http.get("/metrics").text)
    return sum(sample.value for family in families
               if family.name == "streamrec_api_fallback_snapshot_refreshes"
               for sample in family.samples if sample.name.endswith("_total"))


# ------------------------------------------------------------------------------ Redis
def test_flushed_redis_is_rebuilt_from_the_log(settings: Settings,
                                               start_worker: Callable[..., Any],
                                               tmp_path: Path) -> None:
    worker = start_worker()
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    produce(settings, envelopes(400, "f"))
    users = [f"fu{i}" for i in range(20)]
    wait_for(lambda: sum(int(client.hget(K.item_stats(f"it{i}"), "view") or 0)
                         + int(client.hget(K.item_stats(f"it{i}"), "add_to_cart") or 0)
                         for i in range(12)) == 400, 60, "all 400 applied")
    wait_for(lambda: client.exists(K.sentinel), 60, "initial sentinel")
    before = state_of(client, users)

    client.flushdb()  # the worker notices within seconds and replays the log
    wait_for(lambda: client.exists(K.sentinel), 60,
             "sentinel after the automatic rebuild")
    assert state_of(client, users) == before
    # One WARNING names the flush and what the worker does; its completion is no warning
    # (a fresh stack's first start printed two WARNINGs for nothing amiss).
    lines = (tmp_path / "worker-0.log").read_text().splitlines()
    assert any("level=WARNING" in ln and "Redis holds no state of the log" in ln
               for ln in lines)
    done = [ln for ln in lines if "rebuild done: " in ln]
    assert done and all("level=INFO" in ln for ln in done), done

    # The operator's way, with the worker stopped: `streamrec rebuild`.
    worker.send_signal(signal.SIGTERM)
    worker.wait(30)
    client.flushdb()
    out = subprocess.run([sys.executable, "-m", "streamrec.cli", "rebuild"], check=True,
                         env=env_for_child(settings), capture_output=True, text=True)
    assert "replayed 400 messages" in out.stdout
    assert "rebuild: 100%" in out.stderr and "400/400" in out.stderr  # its progress bar
    assert state_of(client, users) == before
    client.close()


def _applied_total(client: redis.Redis) -> int:
    return sum(int(client.hget(K.item_stats(f"it{i}"), "view") or 0)
               + int(client.hget(K.item_stats(f"it{i}"), "add_to_cart") or 0)
               for i in range(12))


def test_redis_back_from_an_older_copy_is_rebuilt(settings: Settings,
                                                  start_worker: Callable[..., Any]) -> None:
    """The sentinel was in the old copy too, so only the applied offsets can tell: at the
    next worker start (committed offsets ahead of Redis) and under a running worker (the
    offsets in Redis went back), Redis is wiped and rebuilt to exactly the log's state."""
    worker = start_worker()
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    produce(settings, envelopes(200, "s"))
    wait_for(lambda: _applied_total(client) == 200, 60, "first 200 applied")
    wait_for(lambda: client.exists(K.sentinel), 60, "initial sentinel")
    old_copy = dump_all(settings.redis_url)
    produce(settings, envelopes(200, "t"))
    wait_for(lambda: _applied_total(client) == 400, 60, "400 applied")
    users = [f"{tag}u{i}" for tag in "st" for i in range(20)]
    expected = state_of(client, users)

    # 1. Stopped worker (its offsets committed), Redis restarted from the older copy.
    worker.send_signal(signal.SIGTERM)
    worker.wait(30)
    restore_all(settings.redis_url, old_copy)
    assert _applied_total(client) == 200 and client.exists(K.sentinel)
    start_worker()
    wait_for(lambda: _applied_total(client) == 400 and client.exists(K.sentinel), 90,
             "stale Redis rebuilt at worker start")
    assert state_of(client, users) == expected

    # 2. Redis goes back to the older copy under the running worker; the next batch sees
    # its applied offsets went back.
    restore_all(settings.redis_url, old_copy)
    produce(settings, envelopes(50, "v"))
    wait_for(lambda: _applied_total(client) == 450 and client.exists(K.sentinel), 90,
             "stale Redis rebuilt under a running worker")
    users += [f"vu{i}" for i in range(20)]
    final = state_of(client, users)
    assert {k: v for k, v in final["recent"].items() if not k.startswith("v")} == (
        expected["recent"])
    client.close()


@pytest.fixture
def own_redis(settings: Settings, tmp_path: Path) -> Iterator[tuple[Settings, ServerProcess]]:
    """A redis-server of this test only, so it can be killed and restarted."""
    srv = start_redis(tmp_path)
    s = settings.model_copy(update={"redis_url": f"redis://{srv.address}/0",
                                    "api_port": free_port(), "admin_keys": ADMIN,
                                    "tracking_keys": TRACK, "read_keys": READ})
    try:
        yield s, srv
    finally:
        srv.stop()


def test_redis_restart_serves_fallback_then_rebuilds(
        own_redis: tuple[Settings, ServerProcess], tmp_path: Path) -> None:
    s, srv = own_redis
    kafka_tools.create_topics(s)
    worker = spawn(WORKER_CMD, log_path=tmp_path / "worker.log", env=env_for_child(s))
    api, http = start_api(s, tmp_path / "api.log")
    try:
        wait_worker_ready(s, worker.pid, proc=worker)
        client = redis.Redis.from_url(s.redis_url, decode_responses=True)
        produce(s, envelopes(300, "r"))
        hr = {"X-API-Key": READ}
        wait_for(lambda: len(http.get("/v1/popular?n=12", headers=hr).json()["items"]) == 12,
                 60, "popular list complete")
        # Two more refreshes of the API's fallback snapshot (every 5 s): the second one
        # began after the list was complete, so the snapshot holds it.
        refreshed = _snapshot_refreshes(http)
        wait_for(lambda: _snapshot_refreshes(http) >= refreshed + 2, 30,
                 "the fallback snapshot refreshed")

        srv.stop()  # Redis down: reads come from the fallback, tracking writes fail closed
        statuses = []
        for _ in range(10):
            resp = http.get("/v1/popular?n=5", headers=hr)
            statuses.append(resp.status_code)
            assert resp.status_code == 200 and resp.json()["source"] == "fallback"
            assert len(resp.json()["items"]) == 5
            user = http.get("/v1/users/ru1/recommendations?n=5", headers=hr)
            assert user.status_code == 200, user.text
        during = [{"event_id": f"down-{i}", "type": "view", "user_id": f"ru{i % 20}",
                   "item_id": f"it{i % 12}"} for i in range(60)]
        resp = http.post("/v1/events", json={"events": during}, headers={"X-API-Key": TRACK})
        # The rate limits cannot count: nothing is accepted, the client is told to retry.
        assert resp.status_code == 503 and int(resp.headers["Retry-After"]) >= 1, resp.text
        assert resp.json()["event_ids"] == [e["event_id"] for e in during]

        # Back, empty, on the same port: the worker rebuilds from the log by itself.
        restarted = start_redis(tmp_path, port=srv.port)
        try:
            wait_for(lambda: http.post("/v1/events", json={"events": during},
                                       headers={"X-API-Key": TRACK}).status_code == 202,
                     30, "the retried batch accepted")
            wait_for(lambda: client.exists(K.sentinel), 90, "sentinel after restart")
            want = {f"it{i}": 0 for i in range(12)}
            for _, value in envelopes(300, "r"):
                want[orjson.loads(value)["events"][0]["item_id"]] += 1
            for ev in during:
                want[ev["item_id"]] += 1

            def counts_match() -> bool:
                got = {}
                for item in want:
                    body = http.get(f"/v1/admin/items/{item}/stats",
                                    headers={"X-API-Key": ADMIN}).json()
                    got[item] = body["views"] + body["cart_adds"]
                return got == want

            wait_for(counts_match, 60, "exact counts after the rebuild")
            wait_for(lambda: http.get("/v1/popular?n=5", headers=hr).json()["source"]
                     == "popular", 30, "serving from Redis again")
            assert all(client.exists(K.user_recent(f"ru{i}")) for i in range(20))
            # api.log says when the outage is over, once (it said only when it began).
            api_log = (tmp_path / "api.log").read_text()
            assert "Redis unavailable, serving the fallback snapshot" in api_log
            assert api_log.count("Redis answers reads again after") == 1, api_log
        finally:
            restarted.stop()
        client.close()
    finally:
        http.close()
        stop_pid(api.pid)
        stop_pid(worker.pid)


def test_redis_at_maxmemory_pauses_the_worker_and_drops_nothing(
        own_redis: tuple[Settings, ServerProcess], tmp_path: Path) -> None:
    """noeviction: at maxmemory Redis refuses writes; the worker logs it as an error and
    waits (lag grows) instead of dropping anything; with memory back, every event counts
    exactly once."""
    s, _ = own_redis
    kafka_tools.create_topics(s)
    log = tmp_path / "worker.log"
    worker = spawn(WORKER_CMD, log_path=log, env=env_for_child(s))
    client = redis.Redis.from_url(s.redis_url, decode_responses=True)
    try:
        wait_worker_ready(s, worker.pid, proc=worker)
        used = int(client.info("memory")["used_memory"])
        # Below what is used (the heartbeats keep allocating): every new write is refused.
        client.config_set("maxmemory", str(used // 2))
        produce(s, envelopes(120, "m"))
        wait_for(lambda: "out of memory (maxmemory reached" in log.read_text(), 60,
                 "the worker reports the refused writes")
        assert _applied_total(client) < 120
        client.config_set("maxmemory", "0")
        wait_for(lambda: _applied_total(client) == 120, 60, "every event once, memory back")
        assert worker.poll() is None
    finally:
        client.close()
        stop_pid(worker.pid)


# ------------------------------------------------------------------------------ broker
def assert_api_said_once(api_log: str, address: str) -> None:
    """api.log says once that writes fail and what the API does, and when it is over."""
    assert api_log.count(f"Kafka at {address} does not take writes") == 1, api_log
    assert "answered 503 with Retry-After" in api_log
    # not "nothing is written": a 503'd event may still land (docs/reliability.md)
    assert "yet one may still land" in api_log and "nothing is written" not in api_log
    assert f"Kafka at {address} acknowledges writes again after" in api_log


def assert_outage_said_once(worker_log: Path, address: str, api_log: str) -> None:
    """The worker's log names the broker outage once and its end once; the Kafka
    clients' own lines come once per 10 s per template, not once per attempt."""
    wait_for(lambda: f"Kafka at {address} answers again after" in worker_log.read_text(),
             15, "the worker's end-of-outage line")
    text = worker_log.read_text()
    assert text.count(f"Kafka at {address} does not answer") == 1, text
    assert "the worker reads and applies no events until it is back" in text
    assert text.count("Unable connect to node") < 20, text
    assert api_log.count("Unable connect to node") < 20, api_log


def test_broker_outage_503_then_recovers(settings: Settings, tmp_path: Path) -> None:
    broker = start_test_broker(tmp_path)
    s = settings.model_copy(update={"kafka_bootstrap": broker.address, "api_port": free_port(),
                                    "tracking_keys": TRACK, "admin_keys": ADMIN,
                                    "produce_timeout_s": 2.0})
    kafka_tools.create_topics(s)
    worker = spawn(WORKER_CMD, log_path=tmp_path / "worker.log", env=env_for_child(s))
    api, http = start_api(s, tmp_path / "api.log")
    ht, ha = {"X-API-Key": TRACK}, {"X-API-Key": ADMIN}

    def views(item: str) -> int:
        return int(http.get(f"/v1/admin/items/{item}/stats", headers=ha).json()["views"])

    try:
        wait_worker_ready(s, worker.pid, proc=worker)
        wait_for(lambda: http.get("/readyz").status_code == 200, 30, "API ready")
        ok = {"type": "view", "user_id": "b1", "item_id": "before"}
        assert http.post("/v1/events", json=ok, headers=ht).status_code == 202
        wait_for(lambda: views("before") == 1, 30, "event before the outage applied")

        broker.stop(timeout=60)
        resp = http.post("/v1/events", json={**ok, "item_id": "during"}, headers=ht)
        assert resp.status_code == 503, resp.text
        assert int(resp.headers["Retry-After"]) >= 1
        assert resp.json()["error"]["code"] == "broker_unavailable"
        assert http.get("/readyz").status_code == 503
        assert http.get("/v1/popular", headers=ha).status_code == 200  # reads unaffected
        # The worker says once that it lost the broker (its log held only aiokafka's
        # "Unable connect to node" lines, ~70 a second, which say nothing of the worker).
        worker_log = tmp_path / "worker.log"
        lost = f"Kafka at {broker.address} does not answer"
        wait_for(lambda: lost in worker_log.read_text(), 15, "the worker's outage warning")

        # The broker back on the same address (Tansu: a fresh, empty one; Apache Kafka: on
        # its log); topics (re)created as `streamrec up` would. No process is restarted.
        broker = start_test_broker(tmp_path, port=broker.port, previous=broker)
        kafka_tools.create_topics(s)

        sent: list[str] = []

        def accepted() -> bool:
            body = {**ok, "item_id": "after", "event_id": f"after-{len(sent)}"}
            if http.post("/v1/events", json=body, headers=ht).status_code != 202:
                return False
            sent.append(body["event_id"])
            return True

        wait_for(accepted, 60, "API producing again")
        # api.log says once that writes fail and what the API does, and when it is over
        # (it held only aiokafka's "Unable connect to node with id 111:" lines).
        api_log = (tmp_path / "api.log").read_text()
        assert_api_said_once(api_log, broker.address)
        if TEST_BROKER == "kafka":  # the log kept: the worker resumes right after "before"
            wait_for(lambda: views("after") == 1, 90, "worker consuming again")
        else:
            # A fresh Tansu starts every partition at offset 0 again, below the position
            # the worker had read to on the old one: the new log's first offsets can be
            # passed over (the log they belonged to is gone anyway, as `up` warns). Each
            # second another event of a new id, until the worker counts one of them.
            last = [time.monotonic()]

            def consumed() -> bool:
                if views("after") >= 1:
                    return True
                if len(sent) < 60 and time.monotonic() - last[0] > 1.0:
                    accepted()
                    last[0] = time.monotonic()
                return False

            wait_for(consumed, 90, "worker consuming again")
            assert views("after") <= len(sent)
        assert_outage_said_once(worker_log, broker.address, api_log)
        assert worker.poll() is None and api.poll() is None
    finally:
        http.close()
        stop_pid(api.pid)
        stop_pid(worker.pid)
        broker.stop(timeout=60)
