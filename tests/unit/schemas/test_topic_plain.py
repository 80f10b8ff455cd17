"""The shortcut for bulk readers answers only as the models would (schemas.topic_plain)."""

from __future__ import annotations

import json
import random
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from schemas import EventEnvelope, TopicEvent, TrackingEvent
from schemas.topic_plain import PlainEvent, plain_events

NOW = 1_764_800_000.25


def models_say(raw: bytes) -> list[PlainEvent] | None:
    """What the models make of an envelope: its events' fields, or None if refused."""
    try:
        events = EventEnvelope.model_validate(orjson.loads(raw)).events
    except (ValidationError, orjson.JSONDecodeError, TypeError):
        return None
    if any(ev.received_at is None for ev in events):
        return None
    return [(ev.event_id, ev.type, ev.user_id, ev.anonymous_id, ev.item_id, ev.quantity,
             ev.ts, ev.received_at) for ev in events]  # type: ignore[misc]


def test_what_the_api_writes_takes_the_shortcut() -> None:
    tracked = [
        TrackingEvent(type="view", user_id="u1", item_id="i1"),
        TrackingEvent(type="purchase", anonymous_id="a1", item_id="i2", quantity=3,
                      price=9.5, context={"page": "checkout"}),
        TrackingEvent(type="impression", user_id="u1", item_ids=["i1", "i2"],
                      recommendation_id="r1"),
        TrackingEvent(type="click", user_id="ü" * 256, item_id="i3", recommendation_id="r1"),
    ]
    events = [TopicEvent.from_tracking(ev, event_id=f"e{i}", received_at=NOW)
              for i, ev in enumerate(tracked)]
    raw = orjson.dumps(EventEnvelope(events=events).model_dump(exclude_none=True))
    plain = plain_events(raw)
    assert plain is not None
    assert plain == models_say(raw)


_IDS: list[Any] = ["u1", "i9", "a" * 256, "a" * 257, "é" * 256, "", " x ", "x\x00y",
                   "x\x7f", "x\u200by", 7, True, None, ["u1"], {"id": "u1"}, 1.5]
_TIMES: list[Any] = [NOW, 1, 0, -1.0, 2**53, 2**53 - 1, 2**60, 1e308, "1764800000", True,
                     None, 0.5, [NOW]]
_POOLS: dict[str, list[Any]] = {
    "event_id": _IDS,
    "type": ["view", "add_to_cart", "remove_from_cart", "purchase", "impression", "click",
             "identify", "exposure", "forget", "View", "", 3, None],
    "user_id": _IDS,
    "anonymous_id": _IDS,
    "item_id": _IDS,
    "item_ids": [["i1"], [], ["i1"] * 100, ["i1"] * 101, ["", "i1"], ["i1", 2], "i1", None],
    "recommendation_id": ["r1", "", "r" * 256, "r" * 257, 5, None],
    "quantity": [1, 0, -1, 1_000_000, 1_000_001, 2.0, 2.5, "2", True, None],
    "price": [0, 9.99, -0.01, 1e12, 1e12 + 1e-3, 10**13, "9.99", True, None],
    "ts": _TIMES,
    "received_at": _TIMES,
    "context": [{}, {"page": "home"}, [], "home", None, 3],
    "forwarded": [True, False, 1, None, "true"],
    "experiment": [{"id": "x", "variant": "a"}, None],
    "unknown": ["x", None],
}


def random_event(rng: random.Random) -> dict[str, Any]:
    """A valid view, then up to three fields set, replaced or removed at random."""
    event: dict[str, Any] = {"event_id": "e1", "type": "view", "user_id": "u1",
                             "item_id": "i1", "ts": NOW, "received_at": NOW}
    for _ in range(rng.randrange(4)):
        field = rng.choice(sorted(_POOLS))
        if rng.random() < 0.15:
            event.pop(field, None)
        else:
            event[field] = rng.choice(_POOLS[field])
    return event


def random_message(rng: random.Random) -> bytes:
    events = [random_event(rng) for _ in range(rng.randrange(1, 4))]
    envelope: dict[str, Any] = {"v": 1, "events": events}
    roll = rng.random()
    if roll < 0.05:
        envelope["v"] = rng.choice([2, True, "1", 1.0, None])
    elif roll < 0.08:
        envelope["events"] = rng.choice([[], {}, None, "x"])
    elif roll < 0.10:
        envelope["extra"] = 1
    elif roll < 0.12:
        del envelope["v"]
    elif roll < 0.14:
        return orjson.dumps(events[0])  # a bare event: the models' path
    # json, not orjson: it writes what orjson refuses (lone surrogates, 1e308 * 10)
    return json.dumps(envelope).encode()


def test_every_answer_of_the_shortcut_is_the_models_answer() -> None:
    rng = random.Random(20261204)
    answered = 0
    for _ in range(6000):
        raw = random_message(rng)
        plain = plain_events(raw)
        if plain is not None:
            answered += 1
            assert plain == models_say(raw), raw
    assert answered > 1000  # the shortcut is taken, not just always declined


@pytest.mark.parametrize("raw", [None, b"", b"not json", b"[]", b'{"events": "x"}',
                                 b'{"v": 1, "events": [{"event_id": "e1"}]}'])
def test_what_is_not_the_usual_shape_goes_to_the_models(raw: bytes | None) -> None:
    assert plain_events(raw) is None


def test_an_event_without_a_receive_time_goes_to_the_models() -> None:
    # the models' path fills it from the Kafka record's timestamp
    event = {"event_id": "e1", "type": "view", "user_id": "u1", "item_id": "i1", "ts": NOW}
    assert plain_events(orjson.dumps({"v": 1, "events": [event]})) is None
