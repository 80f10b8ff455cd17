"""A history's expiry stamp (``stream.history_expiry``) never moves back: events with
older receive times than the entity's newest (the entries an ``identify`` hands over,
forwarded with their own receive times) must not shorten the life of a history whose
entity had an event later."""

from __future__ import annotations

from typing import Any

import pytest

from core.redis_client import async_client
from core.redis_keys import RedisKeys
from schemas import TopicEvent
from stream.bounds import StateBounds
from stream.history_expiry import EXPIRES
from stream.history_store import DictStore
from stream.processor import EventProcessor, ProcessorConfig
from stream.redis_writer import RedisWriter

pytestmark = pytest.mark.integration

T = 1_700_000_000
DAY = 86400
BOUNDS = StateBounds(entity_ttl_s=30 * DAY, anonymous_ttl_s=14 * DAY)


async def test_handed_over_entries_do_not_shorten_the_users_expiry(settings: Any) -> None:
    client = async_client(settings)
    keys = RedisKeys()
    proc = EventProcessor(RedisWriter(client, keys, dedupe_ttl_s=3600, bounds=BOUNDS), keys,
                          ProcessorConfig(bounds=BOUNDS), lambda: None)
    store = DictStore()
    # The anonymous id browsed ten days ago; the user, on another device, yesterday.
    await proc.process([(TopicEvent(event_id="a1", type="view", anonymous_id="anon1",
                                    item_id="i1", ts=T - 10 * DAY,
                                    received_at=T - 10 * DAY), 0)], store)
    await proc.process([(TopicEvent(event_id="u1", type="view", user_id="user1",
                                    item_id="i2", ts=T - DAY, received_at=T - DAY), 1)],
                       store)
    assert store.data["user1"][EXPIRES] == T - DAY + 30 * DAY
    ident = TopicEvent(event_id="id1", type="identify", anonymous_id="anon1",
                       user_id="user1", ts=T, received_at=T)
    copies = (await proc.process([(ident, 0)], store)).forwards["user1"]
    assert copies and max(c.receive_time for c in copies) == T - 10 * DAY
    await proc.process([(c, 1) for c in copies], store)
    # The user's last event is still yesterday's: its history is kept 30 days from it.
    assert len(store.data["user1"]["entries"]) == 2
    assert store.data["user1"][EXPIRES] == T - DAY + 30 * DAY
    await client.aclose()
