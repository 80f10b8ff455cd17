"""A batch's forwards to one user fit Kafka's message limit, however many identifies it has."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import redis

from core import kafka_tools
from core.limits import MAX_ID_LEN
from core.redis_keys import RedisKeys
from core.settings import Settings
from schemas import EventEnvelope, TopicEvent
from stream.agents import forward_messages
from tests.integration.group_progress import committed_to_end
from tests.integration.stream.test_worker import processed, produce
from tests.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.broker]
K = RedisKeys()


def _event(n: int, etype: str, item: str | None, *, anon: str | None = None,
           user: str | None = None) -> dict[str, Any]:
    now = time.time()
    return {"event_id": f"fw-{n}", "type": etype, "anonymous_id": anon, "user_id": user,
            "item_id": item, "ts": now + n * 1e-6, "received_at": now + n * 1e-6}


def test_forward_messages_keep_order_under_the_bound() -> None:
    now = time.time()
    events = [TopicEvent(event_id=f"e{i}", type="view", item_id="x" * MAX_ID_LEN,
                         anonymous_id="a", user_id="u", ts=now, received_at=now,
                         forwarded=True) for i in range(2000)]
    messages = forward_messages(events, max_bytes=50_000)
    assert len(messages) > 1 and all(len(m) <= 50_000 for m in messages)
    back = [e for m in messages for e in EventEnvelope.model_validate_json(m).events]
    assert back == events
    # A batch that fits is the one message it always was.
    assert forward_messages(events[:3]) == [orjson.dumps(
        EventEnvelope(events=events[:3]).model_dump(exclude_none=True))]


def _anons_on(partition: int, partitions: int, count: int) -> list[str]:
    """``count`` anonymous ids whose events the API keys to ``partition``."""
    found: list[str] = []
    n = 0
    while len(found) < count:
        anon = f"fw-a{n}"
        if kafka_tools.partition_of(anon.encode(), partitions) == partition:
            found.append(anon)
        n += 1
    return found


def test_many_identifies_as_one_user_in_a_batch(
        settings: Settings, start_worker: Callable[..., Any]) -> None:
    """Each ``identify`` hands over the whole anonymous history, and the worker sent a
    batch's forwards to one user as one message: 300 identifies as one user through the
    API (a tracking-key holder can) made a 1.8 MB message that Kafka refused, the events
    agent crashed, and that partition's committed offset never moved again. Here one
    message holds the identifies of 40 anonymous ids as one user, each with 100 views of
    256-character items: ~1.4 MB of forwards. (The same identify repeated forwards once
    since 2695c0f: it no longer makes a large batch.)"""
    worker = start_worker()
    client = redis.Redis.from_url(settings.redis_url)
    anons = _anons_on(0, settings.topic_partitions, 40)
    records = []
    n = 0
    for a, anon in enumerate(anons):
        views = []
        for i in range(100):
            views.append(_event(n, "view", f"{a:02d}{i:03d}" + "x" * (MAX_ID_LEN - 5),
                                anon=anon))
            n += 1
        records.append((anon.encode(), orjson.dumps({"v": 1, "events": views})))
    identifies = []
    for anon in anons:
        identifies.append(_event(n, "identify", None, anon=anon, user="fw-u"))
        n += 1
    records.append((anons[0].encode(), orjson.dumps({"v": 1, "events": identifies})))
    produce(settings, records)
    wait_for(lambda: processed(client) >= n, timeout=90)
    later = orjson.dumps({"v": 1, "events": [_event(n, "view", "after", user="fw-u")]})
    produce(settings, [(b"fw-u", later)])
    wait_for(lambda: b"after" in (client.get(K.user_recent("fw-u")) or b""), timeout=60)
    # The forwarded histories reached the user (the last anonymous id's last view).
    wait_for(lambda: b"39099" in (client.get(K.user_recent("fw-u")) or b""), timeout=60)

    wait_for(lambda: committed_to_end(settings), timeout=60)
    assert worker.poll() is None
    client.close()
