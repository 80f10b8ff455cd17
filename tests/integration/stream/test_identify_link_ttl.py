"""A user's identified anonymous ids expire, but never before the anonymous id's state."""

from __future__ import annotations

from typing import Any

import pytest

from core.redis_keys import RedisKeys
from core.settings import Settings
from schemas import TopicEvent
from stream.bounds import StateBounds
from tests.integration.stream.test_forget import ev, make

pytestmark = pytest.mark.integration
K = RedisKeys()


async def test_an_anonymous_event_forwarded_to_the_user_keeps_the_link(
        settings: Settings) -> None:
    """``u:{user}:anons`` had no expiry (one key per user id ever named in an identify:
    unbounded); it now lives ``links_ttl_s`` after its last write. An anonymous id that
    keeps shopping after its identify lives on (each event extends its state), so each
    of its events, forwarded to the user, writes the link again: a forget of the user
    months later still finds it."""
    proc, client, store = await make(settings)
    first = await proc.process([(e, 0) for e in (ev(1, "view", None, "a", anon="a1"),
                                                 ev(2, "identify", "u1", anon="a1"))], store)
    lifetime = StateBounds().links_ttl_s
    assert lifetime - 5 < await client.ttl(K.user_anons("u1")) <= lifetime
    await client.expire(K.user_anons("u1"), 60)  # months later, as far as Redis can tell
    later = await proc.process([(ev(3, "view", None, "b", anon="a1"), 0)], store)
    forwarded: list[Any] = [*first.forwards.get("u1", []), *later.forwards.get("u1", [])]
    assert any(isinstance(e, TopicEvent) and e.item_id == "b" for e in forwarded)
    await proc.process([(e, 0) for e in forwarded], store)  # as the worker reads them back
    assert lifetime - 5 < await client.ttl(K.user_anons("u1")) <= lifetime
    assert await client.smembers(K.user_anons("u1")) == {"a1"}
    await client.aclose()
