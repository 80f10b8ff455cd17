"""A broker outage while the Python client tracks: the API answers 503 + Retry-After,
the client retries the same batches (same event ids) until a fresh broker takes them,
and every item's exact view count equals the views sent: not one lost, not one twice."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest

from core import kafka_tools
from core.net import free_port
from core.redis_client import sync_client
from core.redis_keys import RedisKeys
from core.settings import Settings, env_for_child
from streamrec.client import Client, RetryPolicy
from streamrec.stack.servers import spawn, stop_pid
from tests.conftest import start_test_broker
from tests.integration.conftest import WORKER_CMD, wait_worker_ready
from tests.integration.streamrec.test_client import ADMIN, TRACK, start_api, views
from tests.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.broker]


def test_broker_outage_is_retried_to_exactly_once_counts(settings: Settings,
                                                         tmp_path: Path) -> None:
    broker = start_test_broker(tmp_path)
    s = settings.model_copy(update={"kafka_bootstrap": broker.address, "api_port": free_port(),
                                    "tracking_keys": TRACK, "admin_keys": ADMIN,
                                    "produce_timeout_s": 1.0})
    kafka_tools.create_topics(s)
    worker = spawn(WORKER_CMD, log_path=tmp_path / "worker.log", env=env_for_child(s))
    api = start_api(s, tmp_path / "api.log")
    url = f"http://127.0.0.1:{s.api_port}"
    patient = RetryPolicy(max_retries=200, base_delay_s=0.2, max_delay_s=1.0)
    sent: Counter[str] = Counter()
    sr = Client(url, TRACK, admin_key=ADMIN, retry=patient, batch_size=10, max_in_flight=2,
                flush_interval_s=0.1)
    try:
        wait_worker_ready(s, worker.pid, proc=worker)
        wait_for(lambda: sr.ready().status == "ready", 30, "API ready")

        def track(first: int, count: int) -> None:
            for k in range(first, first + count):
                item = f"o-{k % 7}"
                sr.track("view", user_id=f"ou{k % 13}", item_id=item)
                sent[item] += 1

        track(0, 30)
        sr.flush()
        wait_for(lambda: sum(views(sr, f"o-{i}") for i in range(7)) == 30, 60,
                 "events before the outage applied")

        broker.stop(timeout=60)
        during = threading.Thread(target=track, args=(30, 50))
        during.start()
        wait_for(lambda: sr.stats.statuses["503"] >= 2, 60, "503s while the broker is down")
        during.join(60)

        # The broker back on the same address (Tansu: fresh and empty; Apache Kafka: on its
        # log); topics as `streamrec up` makes.
        broker = start_test_broker(tmp_path, port=broker.port, previous=broker)
        kafka_tools.create_topics(s)
        sr.flush()  # returns once every batch got its 202
        assert sr.stats.events_delivered == 80 and sr.stats.events_failed == 0
        assert sr.stats.retries >= 2

        def counted() -> bool:
            got = {item: views(sr, item) for item in sent}
            assert all(got[i] <= sent[i] for i in sent), f"counted twice: {got} vs {sent}"
            return got == dict(sent)

        try:
            wait_for(counted, 90, "exact counts after the outage")
        except AssertionError as exc:  # say where the events went (a CI flake, not seen here)
            raise AssertionError(f"{exc}\n{where_they_are(s, sr, sent, tmp_path)}") from None
        assert worker.poll() is None and api.poll() is None
    finally:
        sr.close()
        stop_pid(api.pid)
        stop_pid(worker.pid)
        broker.stop(timeout=60)


def where_they_are(s: Settings, sr: Client, sent: Counter[str], logs: Path) -> str:
    """What a failed wait needs to be explained: counts, the log's end offsets, the
    group's committed offsets, the offsets Redis holds as applied, the worker's last
    lines (connection retries left out)."""
    got = {item: views(sr, item) for item in sent}
    ends = kafka_tools.high_watermarks(s, s.topic_events)
    committed = {f"{tp.topic}[{tp.partition}]": off for tp, off in
                 kafka_tools.committed_offsets(s, s.app_id).items()}
    with sync_client(s) as redis:
        applied = redis.hgetall(RedisKeys().applied(s.topic_events))
    noise = ("Unable connect", "Unable to update", "Failed fetch", "NodeNotReady")
    lines = [line[:300] for line in (logs / "worker.log").read_text().splitlines()
             if line.startswith("ts=") and not any(n in line for n in noise)]
    return "\n".join([f"counted {got} of {dict(sent)}", f"end offsets {ends}",
                      f"committed {committed}", f"applied in Redis {applied}",
                      "worker log (last 60 lines):", *lines[-60:]])
