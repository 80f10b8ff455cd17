"""A worker lets go of the histories of partitions a rebalance gave to another worker
(real broker and Redis), and has them all again when the partitions come back."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaProducer

from core import kafka_tools
from core.settings import Settings
from streamrec.stack.servers import stop_pid
from tests.integration.test_history_expiry_e2e import latest
from tests.integration.worker_view import partitions
from tests.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.broker]


def _one_user_per_partition(partitions: int) -> dict[int, str]:
    """A user id whose events the API would key to each partition."""
    users: dict[int, str] = {}
    n = 0
    while len(users) < partitions:
        user = f"u-hand-{n}"
        users.setdefault(kafka_tools.partition_of(user.encode(), partitions), user)
        n += 1
    return users


def _view(settings: Settings, users: dict[int, str], item: str) -> None:
    """One view of ``item`` by each user, keyed as the API keys it."""
    producer = KafkaProducer(**kafka_tools.client_options(settings), acks="all")
    now = time.time()
    for user in users.values():
        producer.send(settings.topic_events, key=user.encode(), value=orjson.dumps(
            {"v": 1, "events": [{"event_id": f"{user}-{item}", "type": "view",
                                 "item_id": item, "user_id": user, "ts": now,
                                 "received_at": now}]}))
    producer.flush()
    producer.close()


def _items(settings: Settings, users: dict[int, str]) -> dict[str, list[str]]:
    """Per user: the items of the entries of its newest history on the changelog."""
    out: dict[str, list[str]] = {}
    for key, record in latest(settings).items():
        for user in users.values():
            if user.encode() in key and record.value is not None:
                out[user] = [e[1] for e in orjson.loads(record.value)["entries"]]
    return out


def test_histories_of_moved_partitions_leave_memory_and_come_back_whole(
        settings: Settings, start_worker: Callable[..., Any], tmp_path: Path) -> None:
    """Faust drops, after a rebalance, only the keys it restored: a worker kept the
    histories it had written of partitions now another worker's until it restarted.
    The history sweep now lets go of them (no tombstone); once the partitions come back,
    the restore brings them back whole: the next event adds to them."""
    users = _one_user_per_partition(settings.topic_partitions)
    first = start_worker(history_sweep_interval_s=0.5)
    _view(settings, users, "i1")
    wait_for(lambda: len(_items(settings, users)) == len(users), 60,
             "every user's first history written")
    peer = start_worker(history_sweep_interval_s=600.0)  # takes partitions over
    log = tmp_path / "worker-0.log"

    def let_go() -> int:
        found = re.findall(r"let go of (\d+) histories", log.read_text(errors="replace"))
        return sum(int(n) for n in found)
    wait_for(lambda: let_go() > 0, 60, "the first worker letting go of moved histories")
    assert let_go() < len(users)  # only those of the partitions it lost
    stop_pid(peer.pid, timeout=30)  # the partitions come back, restored from the log
    wait_for(lambda: partitions(settings, first.pid) == set(range(settings.topic_partitions)),
             60, "every partition back with the first worker")
    _view(settings, users, "i2")
    want = {user: ["i1", "i2"] for user in users.values()}
    wait_for(lambda: _items(settings, users) == want, 90,
             "every history holding both views")
