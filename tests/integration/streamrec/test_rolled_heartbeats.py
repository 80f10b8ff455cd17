"""``streamrec up --restart`` drops the heartbeat a replaced worker left: a worker of the
version before this one (``4b494ac``) does not remove its own when it stops, so after an
upgrade by rolling restart ``status`` listed it, stale, beside its successor for ~15 s."""

from __future__ import annotations

import time

import pytest

from core.redis_client import sync_client
from core.redis_keys import RedisKeys
from core.settings import Settings
from streamrec.stack.probes import drop_heartbeat, worker_heartbeats

pytestmark = pytest.mark.integration
K = RedisKeys()


def beat(settings: Settings, worker_id: str, pid: int) -> None:
    """A heartbeat as a worker of either version writes it (hash + registry entry)."""
    client = sync_client(settings, decode_responses=True)
    now = time.time()
    client.hset(K.worker(worker_id), mapping={"pid": str(pid), "ready": "1",
                                               "partitions": "0,1", "heartbeat_at": now})
    client.expire(K.worker(worker_id), 15)
    client.zadd(K.worker_registry, {worker_id: now})
    client.close()


def test_the_heartbeat_of_a_stopped_worker_is_dropped_and_no_other(settings: Settings
                                                                    ) -> None:
    beat(settings, "host-111-aaaa", 111)   # the old worker, stopped, its beat left behind
    beat(settings, "host-222-bbbb", 222)   # its successor
    assert drop_heartbeat(settings.redis_url, 111) == ["host-111-aaaa"]
    assert set(worker_heartbeats(settings.redis_url)) == {"host-222-bbbb"}
    client = sync_client(settings, decode_responses=True)
    assert client.zscore(K.worker_registry, "host-111-aaaa") is None
    assert client.zscore(K.worker_registry, "host-222-bbbb") is not None
    client.close()
    assert drop_heartbeat(settings.redis_url, 111) == []  # nothing left: nothing to do
