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


def test_many_identifies_of_one_history_in_a_batch(
        settings: Settings, start_worker: Callable[..., Any]) -> None:
    """Each ``identify`` hands over the whole anonymous history, and the worker sent a
    batch's forwards to one user as one message: the same identify sent 300 times
    through the API (a tracking-key holder can) made a 1.8 MB message that Kafka
    refused, the events agent crashed, and that partition's committed offset never
    moved again. Here one message holds 100 views of 256-character items and 30
    identifies: ~2 MB of forwards."""
    worker = start_worker()
    client = redis.Redis.from_url(settings.redis_url)
    views = [_event(i, "view", f"{i:03d}" + "x" * (MAX_ID_LEN - 3), anon="fw-a")
             for i in range(100)]
    identifies = [_event(100 + i, "identify", None, anon="fw-a", user="fw-u")
                  for i in range(30)]
    value = orjson.dumps({"v": 1, "events": [*views, *identifies]})
    produce(settings, [(b"fw-a", value)])
    wait_for(lambda: processed(client) >= 130, timeout=60)
    later = orjson.dumps({"v": 1, "events": [_event(200, "view", "after", user="fw-u")]})
    produce(settings, [(b"fw-u", later)])
    wait_for(lambda: b"after" in (client.get(K.user_recent("fw-u")) or b""), timeout=60)
    # The forwarded history reached the user.
    wait_for(lambda: b"099" in (client.get(K.user_recent("fw-u")) or b""), timeout=60)

    def committed_to_end() -> bool:
        ends = kafka_tools.high_watermarks(settings, settings.topic_events)
        done = {tp.partition: off for tp, off in
                kafka_tools.committed_offsets(settings, settings.app_id).items()
                if tp.topic == settings.topic_events}
        return all(done.get(p, 0) >= end for p, end in ends.items() if end)

    wait_for(committed_to_end, timeout=60)
    assert worker.poll() is None
    client.close()
