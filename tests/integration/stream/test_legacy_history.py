"""An anonymous history an older worker wrote (no cart, no expiry stamp), identified after
the upgrade: the user gets the whole cart, from Redis, as a history of this version
hands it over (stream.legacy_history)."""

from __future__ import annotations

from typing import Any

import pytest

from core.redis_client import async_client
from core.redis_keys import RedisKeys
from schemas import TopicEvent
from stream.history_expiry import EXPIRES, PARTITION
from stream.history_store import DictStore
from stream.legacy_history import is_legacy
from stream.processor import EventProcessor, ProcessorConfig
from stream.redis_writer import RedisWriter

pytestmark = pytest.mark.integration

HISTORY_MAX = 5


@pytest.fixture
def settings(either_redis: Any) -> Any:
    """On one Redis and on a Redis Cluster (the read spans the ids' slots)."""
    return either_redis


def anon_ev(i: int, etype: str, item: str) -> TopicEvent:
    return TopicEvent(event_id=f"e{i}", type=etype, anonymous_id="anon1", item_id=item,
                      ts=1_700_000_000 + i, received_at=1_700_000_000 + i)


def as_written_before(value: dict[str, Any]) -> dict[str, Any]:
    """``value`` as the worker of ``0cb3bfc`` wrote it: no cart, no expiry stamp."""
    return {k: v for k, v in value.items() if k not in ("cart", "uncart", EXPIRES, PARTITION)}


def processor(settings: Any) -> tuple[Any, RedisKeys, EventProcessor, DictStore]:
    """A Redis client, the key names, a processor (no model) over them, an empty store."""
    client = async_client(settings)
    keys = RedisKeys()
    proc = EventProcessor(RedisWriter(client, keys, dedupe_ttl_s=3600), keys,
                          ProcessorConfig(history_max=HISTORY_MAX), lambda: None)
    return client, keys, proc, DictStore()


async def test_a_cart_carted_before_the_upgrade_is_handed_over_at_identify(
        settings: Any) -> None:
    client, keys, proc, store = processor(settings)
    # Carted three, removed one, then browsed past the history cap: only views remain.
    visit = [anon_ev(1, "add_to_cart", "c1"), anon_ev(2, "add_to_cart", "c2"),
             anon_ev(3, "add_to_cart", "c3"), anon_ev(4, "remove_from_cart", "c3"),
             *(anon_ev(10 + i, "view", f"v{i}") for i in range(2 * HISTORY_MAX))]
    await proc.process([(e, 0) for e in visit], store)
    store.data["anon1"] = old = as_written_before(store.data["anon1"])
    assert is_legacy(old) and {e[2] for e in old["entries"]} == {"view"}
    assert {m for m in await client.zrange(keys.user_cart("anon1"), 0, -1)} == {b"c1", b"c2"}

    ident = TopicEvent(event_id="i1", type="identify", anonymous_id="anon1", user_id="u1",
                       ts=1_700_000_100, received_at=1_700_000_100)
    copies = (await proc.process([(ident, 0)], store)).forwards["u1"]
    await proc.process([(e, 1) for e in copies], store)
    assert set(await client.zrange(keys.user_cart("u1"), 0, -1)) == {b"c1", b"c2"}
    # The value written back is of this version: its cart, stamped, read from the table
    # from now on (identifying again hands nothing new over).
    assert not is_legacy(store.data["anon1"])
    assert {i for i, _ in store.data["anon1"]["cart"]} == {"c1", "c2"}
    again = (await proc.process([(ident, 0)], store)).forwards.get("u1", [])
    assert {e.event_id for e in again} <= {e.event_id for e in copies}
    await client.aclose()


async def test_a_users_legacy_history_and_a_stamped_one_read_nothing_from_redis(
        settings: Any) -> None:
    # Only an anonymous id's legacy value has a cart to take over: a user's, or a value
    # already of this version, is stepped as stored.
    client, keys, proc, store = processor(settings)
    user = TopicEvent(event_id="u-e1", type="add_to_cart", user_id="u2", item_id="c9",
                      ts=1_700_000_000, received_at=1_700_000_000)
    await proc.process([(user, 0)], store)
    store.data["u2"] = as_written_before(store.data["u2"])
    await proc.process([(anon_ev(1, "add_to_cart", "c1"), 0)], store)
    stamped = dict(store.data["anon1"])
    await client.zadd(keys.user_cart("anon1"), {"stray": 1.0})
    later = TopicEvent(event_id="u-e2", type="view", user_id="u2", item_id="v1",
                       ts=1_700_000_001, received_at=1_700_000_001)
    await proc.process([(later, 0), (anon_ev(2, "view", "v2"), 0)], store)
    assert "cart" not in store.data["u2"]
    assert {i for i, _ in store.data["anon1"]["cart"]} == {i for i, _ in stamped["cart"]}
    await client.aclose()
