"""A rebuild holds the histories of the ids active within their TTL, not of every id in
the log.

The events topic is kept forever and anyone holding the public tracking key can name
fresh ids: a rebuild (``streamrec replay --rebuild``, or the worker's own when Redis comes
back empty) replayed the whole log into one in-memory store of histories that never
dropped one, so its memory grew with every id ever named. The worker's table forgets
an id past its TTL (``stream.history_expiry``); the replay now does too.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest
from kafka import KafkaProducer

from core import kafka_tools
from core.redis_client import async_client, sync_client
from core.redis_keys import RedisKeys
from core.settings import Settings
from schemas import EventEnvelope, TopicEvent
from stream import rebuild
from stream.history_store import DictStore

pytestmark = [pytest.mark.integration, pytest.mark.broker]
K = RedisKeys()
DAY = 86_400.0


class PeakStore(DictStore):
    """The replay's store, remembering the most histories it held at once."""

    peak = 0

    def put(self, entity: str, value: dict[str, Any], partition: int) -> None:
        super().put(entity, value, partition)
        PeakStore.peak = max(PeakStore.peak, len(self.data))


def test_a_rebuild_drops_histories_past_their_ttl(settings: Settings,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    # 1,500 anonymous ids, one view each, one id every 12 hours up to now: with the
    # 14-day TTL of anonymous ids about 28 of them are live at any point of the log.
    ids = 1500
    now = time.time()
    events = [TopicEvent(event_id=f"e{n}", type="view", anonymous_id=f"anon-{n}",
                         item_id=f"item-{n % 50}", ts=at, received_at=at)
              for n in range(ids) for at in [now - (ids - n) * DAY / 2]]
    kafka_tools.create_topics(settings)
    producer = KafkaProducer(**kafka_tools.client_options(settings), acks="all")
    for event in events:
        producer.send(settings.topic_events, key=event.entity.encode(), value=orjson.dumps(
            EventEnvelope(events=[event]).model_dump(exclude_none=True)))
    producer.flush()
    producer.close()

    PeakStore.peak = 0
    monkeypatch.setattr(rebuild, "DictStore", PeakStore)
    monkeypatch.setattr(rebuild, "PRUNE_MIN", 50, raising=False)

    async def replay() -> rebuild.RebuildResult:
        client = async_client(settings)
        try:
            return await rebuild.replay_into_redis(settings, client)
        finally:
            await client.aclose()

    result = asyncio.run(replay())

    assert result.events == ids
    # At most one replayed batch of fresh ids beyond the live ones, not all 1,500.
    assert PeakStore.peak <= rebuild.BATCH + 100, PeakStore.peak
    assert result.histories_expired >= ids - rebuild.BATCH - 100
    # The replay's state is as before: the newest ids have their recent lists.
    sync = sync_client(settings)
    try:
        assert sync.exists(K.user_recent(f"anon-{ids - 1}"))
    finally:
        sync.close()
