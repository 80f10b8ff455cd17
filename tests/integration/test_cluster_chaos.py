"""Chaos on a cluster: a Kafka broker and a worker SIGKILLed, and a worker added, while
24,000 events with known per-item counts flow through the API; and the same with a
Redis Cluster master SIGKILLed (it has a replica to fail over to).

The stack is ``streamrec up --broker kafka --brokers 3 --workers 2 --api-processes 2``
(topics with 3 replicas and ``min.insync.replicas`` 2, producers ``acks=all``). A client
posts batches of events through the shared API port and retries every batch without a
202 with the same event ids, after the ``Retry-After`` it was given. While it sends, one
broker and one worker are SIGKILLed, ``streamrec up`` brings both back, and ``up
--workers 3`` adds a third worker (a rebalance mid-stream). Afterwards every per-item
count must be exact (0 lost, 0 double-counted) and every shopper must have a list; the
API must have answered only 202, or 503 with ``Retry-After`` (never a 500, never a
dropped connection on the shared port left unanswered for good).

Helpers (workload bookkeeping, the exact-count check, the report line) are
``tests/integration/test_chaos.py``'s.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.redis_keys import RedisKeys
from core.settings import Settings
from streamrec.stack.servers import pid_alive
from tests.conftest import java_missing
from tests.integration.streamrec.test_stack import Stack, stack_in
from tests.integration.test_chaos import (
    ADMIN,
    FIELDS,
    TRACK,
    Workload,
    differences,
    report,
    wait_caught_up,
    wait_lists_written,
)
from tests.polling import wait_for

pytestmark = [
    pytest.mark.integration, pytest.mark.e2e, pytest.mark.cluster, pytest.mark.slow,
    # run beside the Kafka leg's other test files (make test-kafka), not alone: room for
    # a sender that waits out a busy machine (its own bound is 600 s)
    pytest.mark.timeout(900),
    pytest.mark.skipif(java_missing(), reason="Apache Kafka needs Java 17+ (no `java` here)"),
]

N_EVENTS = 24_000
K = RedisKeys()
BATCH = 200


def api_batches(n_events: int, seed: int) -> tuple[list[list[dict[str, Any]]], Workload]:
    """Batches of tracking events (the API's shape) with known effects: 400 users and
    60 anonymous visitors, 60 items with a skewed popularity, views, cart adds and
    purchases."""
    rng = random.Random(seed)
    work = Workload()
    base = time.time()
    batches: list[list[dict[str, Any]]] = []
    while work.sent < n_events:
        batch = []
        for _ in range(min(BATCH, n_events - work.sent)):
            anon = rng.random() < 0.15
            entity = f"ka{rng.randrange(60)}" if anon else f"ku{rng.randrange(400)}"
            event: dict[str, Any] = {
                "event_id": f"kc-{work.sent}", "type": rng.choices(list(FIELDS),
                                                                   weights=(80, 15, 5))[0],
                "item_id": f"ki{min(int(rng.expovariate(0.08)), 59)}",
                "timestamp": base + work.sent * 1e-3}
            event["anonymous_id" if anon else "user_id"] = entity
            work.record(entity, event)
            work.shoppers.add(entity)
            batch.append(event)
        batches.append(batch)
    return batches, work


@dataclass
class Sender:
    """Posts the batches in order; a batch without a 202 is sent again, same event ids."""

    url: str
    batches: list[list[dict[str, Any]]]
    accepted: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=15) as client:
            for batch in self.batches:
                while not self._post(client, batch):
                    pass
                self.accepted += 1
                time.sleep(0.05)  # a steady client: the kills land mid-stream
        self.done.set()

    def _post(self, client: httpx.Client, batch: list[dict[str, Any]]) -> bool:
        try:
            resp = client.post("/v1/events", json={"events": batch},
                               headers={"X-API-Key": TRACK})
        except httpx.HTTPError as exc:  # a connection the dead process held
            self.statuses[type(exc).__name__] += 1
            time.sleep(0.1)
            return False
        self.statuses[str(resp.status_code)] += 1
        if resp.status_code == 202:
            return True
        if resp.status_code != 503 or "retry-after" not in resp.headers:
            self.problems.append(f"{resp.status_code} {resp.headers} {resp.text[:200]}")
        elif resp.json().get("event_ids") != [e["event_id"] for e in batch]:
            self.problems.append("503 without the batch's event ids to retry with")
        time.sleep(min(float(resp.headers.get("retry-after") or 0.2), 1.0))
        return False

    def wait_accepted(self, share: float) -> None:
        """Block until ``share`` of the batches are accepted (or the sender finished)."""
        wanted = int(share * len(self.batches))
        wait_for(lambda: self.accepted >= wanted or self.done.is_set(), 300,
                 f"{wanted} batches accepted", interval=0.02)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Stack]:
    with stack_in(tmp_path, down_timeout=120) as stack:
        stack.env.update(STREAMREC_TRACKING_KEYS=TRACK, STREAMREC_ADMIN_KEYS=ADMIN)
        yield stack


def _kill(stack: Stack, name: str) -> int:
    pid = stack.pids()[name]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid), 10, f"{name} gone")
    return pid


def test_a_broker_and_a_worker_killed_and_a_worker_added_lose_and_double_nothing(
        cluster: Stack) -> None:
    cluster.up("--broker", "kafka", "--brokers", "3", "--workers", "2",
        "--api-processes", "2")
    batches, work = api_batches(N_EVENTS, seed=151)
    sender = Sender(cluster.api_url, batches)
    thread = threading.Thread(target=sender.run, daemon=True)
    thread.start()
    sender.wait_accepted(0.2)
    _kill(cluster, "kafka-2")
    sender.wait_accepted(0.35)
    _kill(cluster, "worker")
    sender.wait_accepted(0.5)
    cluster.up()  # brings the broker and the worker back
    sender.wait_accepted(0.65)
    cluster.up("--workers", "3")  # a third worker joins mid-stream: a rebalance
    thread.join(timeout=600)
    assert sender.done.is_set(), "the client never got every batch accepted"

    settings = Settings(redis_url=cluster.state()["redis_url"])
    with httpx.Client(base_url=cluster.api_url, timeout=10) as client:
        lost, doubled, problems = wait_caught_up(lambda: differences(client, work), 180)
    missing_lists = wait_lists_written(settings, work.shoppers, timeout=60)
    live = [w for w in cluster.status()["workers"] if not w["stale"]]
    report("cluster-chaos", events_sent=work.sent, batches=len(batches),
           answers=dict(sender.statuses), lost=lost, double_counted=doubled,
           items=len(work.counts), shoppers=len(work.shoppers),
           missing_lists=len(missing_lists), workers_after=len(live))
    assert not sender.problems, sender.problems[:5]
    assert (lost, doubled) == (0, 0), problems[:10]
    assert not problems, problems[:10]
    assert not missing_lists, missing_lists[:10]
    assert len(live) == 3


def _master_of(stack: Stack, key: str) -> str:
    """The record name of the Redis Cluster node that is master of ``key``'s slot now."""
    from core.redis_client import key_slot, sync_client

    client = sync_client(Settings(redis_url=stack.state()["redis_url"], redis_mode="cluster"))
    try:
        node = client.nodes_manager.get_node_from_slot(key_slot(key))
        address = f"{node.host}:{node.port}"
    finally:
        client.close()
    return next(name for name, rec in stack.state()["processes"].items()
                if rec["address"] == address)


def test_a_redis_master_killed_fails_over_and_counts_stay_exact(cluster: Stack) -> None:
    """The master of the shared slot (metadata, popular, the dedupe sets: the one every
    write and every list goes through) is SIGKILLed mid-stream. Its replica takes over
    within seconds; the worker's batches wait and are applied again (idempotent), and
    what a batch wrote was on the replica before its offsets were committed (WAIT)."""
    cluster.up("--redis", "cluster", "--workers", "2", "--api-processes", "2")
    status = cluster.status()
    assert status["redis"] == {"mode": "cluster", "nodes": 6, "masters": 3}
    batches, work = api_batches(N_EVENTS, seed=152)
    sender = Sender(cluster.api_url, batches)
    thread = threading.Thread(target=sender.run, daemon=True)
    thread.start()
    sender.wait_accepted(0.3)
    victim = _master_of(cluster, K.popular)
    _kill(cluster, victim)
    wait_for(lambda: _master_of(cluster, K.popular) != victim, 60, "the replica took over")
    sender.wait_accepted(0.6)
    cluster.up()  # the old master comes back, as a replica of its successor
    thread.join(timeout=600)
    assert sender.done.is_set(), "the client never got every batch accepted"

    settings = Settings(redis_url=cluster.state()["redis_url"], redis_mode="cluster")
    with httpx.Client(base_url=cluster.api_url, timeout=10) as client:
        lost, doubled, problems = wait_caught_up(lambda: differences(client, work), 180)
    missing_lists = wait_lists_written(settings, work.shoppers, timeout=60)
    # the old master is back as a replica once the cluster clears its failure flag
    after = wait_for(lambda: (s := cluster.status())["redis"]["nodes"] == 6 and s, 60,
                     "six live nodes again")
    report("redis-master-sigkill", events_sent=work.sent, batches=len(batches),
           answers=dict(sender.statuses), lost=lost, double_counted=doubled,
           missing_lists=len(missing_lists), redis=after["redis"])
    assert not sender.problems, sender.problems[:5]
    assert (lost, doubled) == (0, 0), problems[:10]
    assert not problems, problems[:10]
    assert not missing_lists, missing_lists[:10]
    assert after["redis"] == {"mode": "cluster", "nodes": 6, "masters": 3}
