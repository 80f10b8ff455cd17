"""``streamrec up --restart`` drops the heartbeat a replaced worker left: a worker of the
version before this one (``4b494ac``) does not remove its own when it stops, so after an
upgrade by rolling restart ``status`` listed it, stale, beside its successor for ~15 s."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from core.net import free_port
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


def test_a_heartbeat_left_unremoved_does_not_abort_the_roll(
        settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Redis not answering just after the new worker was ready: dropping the old
    heartbeat raised, after the old worker was stopped and before the new one was
    recorded, so the state file kept a dead pid and `streamrec down` left the new worker
    running. The heartbeat only expires then (~15 s); the roll goes on."""
    from streamrec.stack import rolling
    from streamrec.stack.plan import Plan
    from streamrec.stack.records import ProcessRecord, StackState, load_state

    s = settings.model_copy(update={"state_dir": tmp_path})
    old = ProcessRecord(name="worker", pid=111, log="w.log")
    new = ProcessRecord(name="worker", pid=222, log="w.log")
    gone = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    state = StackState(redis_url=gone, processes={"worker": old})
    monkeypatch.setattr(rolling, "spawn_child", lambda *a: (new, None, 0.0))
    monkeypatch.setattr(rolling, "wait_ready", lambda *a: None)
    monkeypatch.setattr(rolling, "stop", lambda rec: None)
    plan = Plan(settings=s, old=state, log_dir=tmp_path, echo=lambda _: None,
                alive={"worker": old}, state=state)
    assert rolling.roll(plan, s, "", 5.0) == 1
    recorded = load_state(s)
    assert recorded is not None and recorded.processes["worker"].pid == 222
