"""A Redis that accepts connections but never answers (its redis-server stopped with
SIGSTOP: what a partition that drops packets looks like to a client) is an outage, never
a hang, with real processes on real servers:

* the API answers a 503 with ``Retry-After`` where it has no fallback (an admin read, a
  tracking write it cannot count against the rate limits), lists from its fallback, and
  serves again once Redis answers;
* the worker's batch step times out (``STREAMREC_REDIS_TIMEOUT_S``) and is retried: the
  events that arrived during the stall are applied once Redis answers, each once.

No timing is asserted: the HTTP client's own timeout is far above the API's, so a request
held while Redis is stopped fails the test as an exception.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis

from core import kafka_tools
from core.settings import Settings, env_for_child
from streamrec.stack.servers import ServerProcess, spawn, start_redis, stop_pid
from tests.integration.conftest import WORKER_CMD, api_process, wait_worker_ready
from tests.integration.test_outage import _applied_total, envelopes, produce
from tests.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.broker]
ADMIN, TRACK, READ = "stall-admin-012345678", "stall-track-012345678", "stall-read-0123456789"


@pytest.fixture
def own_redis(settings: Settings, tmp_path: Path) -> Iterator[tuple[Settings, ServerProcess]]:
    """A redis-server of this test only, so it can be stopped; a short worker timeout."""
    srv = start_redis(tmp_path)
    s = settings.model_copy(update={"redis_url": f"redis://{srv.address}/0",
                                    "redis_timeout_s": 1.0, "redis_connect_timeout_s": 1.0,
                                    "admin_keys": ADMIN, "tracking_keys": TRACK,
                                    "read_keys": READ})
    try:
        yield s, srv
    finally:
        os.kill(srv.pid, signal.SIGCONT)  # a failed test must not leave it stopped
        srv.stop()


@contextmanager
def stopped(srv: ServerProcess) -> Iterator[None]:
    """The redis-server stopped (its sockets stay open: connections hang, not fail)."""
    os.kill(srv.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(srv.pid, signal.SIGCONT)


def test_api_answers_503_while_redis_stalls_then_serves_again(
        own_redis: tuple[Settings, ServerProcess], tmp_path: Path) -> None:
    s, srv = own_redis
    kafka_tools.create_topics(s)
    admin, track = {"X-API-Key": ADMIN}, {"X-API-Key": TRACK}
    events = {"events": [{"event_id": f"st-{i}", "type": "view", "user_id": "su1",
                          "item_id": f"it{i}"} for i in range(3)]}
    with api_process(s, tmp_path) as (http, _):
        http.timeout = 30.0  # far above the API's own (1 s): a held request raises
        assert http.get("/v1/admin/items/it1", headers=admin).status_code == 200
        with stopped(srv):
            for _ in range(3):  # every attempt, not only the first one of a pool
                resp = http.get("/v1/admin/items/it1", headers=admin)
                assert resp.status_code == 503, resp.text
                assert int(resp.headers["Retry-After"]) >= 1
                assert resp.json()["error"]["code"] == "unavailable"
            resp = http.post("/v1/events", json=events, headers=track)
            assert resp.status_code == 503 and int(resp.headers["Retry-After"]) >= 1, resp.text
            listed = http.get("/v1/popular?n=5", headers={"X-API-Key": READ})
            assert listed.status_code == 200 and listed.json()["source"] == "fallback"
        wait_for(lambda: http.get("/v1/admin/items/it1", headers=admin).status_code == 200,
                 30, "admin reads served again")
        wait_for(lambda: http.post("/v1/events", json=events, headers=track).status_code
                 == 202, 30, "the retried batch accepted")


def test_worker_retries_the_batch_a_stalled_redis_held(
        own_redis: tuple[Settings, ServerProcess], tmp_path: Path) -> None:
    s, srv = own_redis
    kafka_tools.create_topics(s)
    log = tmp_path / "worker.log"
    worker = spawn(WORKER_CMD, log_path=log, env=env_for_child(s))
    client = redis.Redis.from_url(s.redis_url, decode_responses=True)
    try:
        wait_worker_ready(s, worker.pid, proc=worker)
        produce(s, envelopes(60, "a"))
        wait_for(lambda: _applied_total(client) == 60, 60, "the first 60 applied")
        with stopped(srv):
            produce(s, envelopes(60, "b"))
            # the batch step gave up on its reply (it hung for ever without a timeout)
            wait_for(lambda: "Redis unavailable while applying" in log.read_text(), 30,
                     "the worker reports the stalled Redis")
        wait_for(lambda: _applied_total(client) == 120, 60, "every event once, Redis back")
        # The stall may have caught the finisher's applied-offsets write instead of the
        # batch's: the events are counted while that write still waits out its backoff,
        # and its recovery is logged when the backoff ends (up to RETRY_MAX_S later).
        wait_for(lambda: "Redis answers again: applied" in log.read_text(), 30,
                 "the worker reports Redis back")
        assert worker.poll() is None
    finally:
        client.close()
        stop_pid(worker.pid)
