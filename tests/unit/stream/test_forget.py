"""The forgetting rule (stream.forget): which events are never applied again, and
re-driven records without them."""

from __future__ import annotations

import orjson

from schemas import EventEnvelope, TopicEvent
from stream.forget import dropped, is_forgotten, scrub

FORGOTTEN = {"u1": 100.0, "anon": 50.0}


def ev(etype: str = "view", received: float = 10.0, **who: str) -> TopicEvent:
    return TopicEvent(event_id=f"e{received}", type=etype, item_id="i", ts=received,
                      received_at=received, **who)


def test_events_naming_a_forgotten_id_received_until_the_forget_are_dropped() -> None:
    assert is_forgotten("u1", None, 100.0, FORGOTTEN)
    assert not is_forgotten("u1", None, 100.5, FORGOTTEN)  # came back later
    assert is_forgotten("u2", "anon", 20.0, FORGOTTEN)  # as the anonymous id
    assert not is_forgotten("u2", None, 20.0, FORGOTTEN)
    assert dropped(ev(user_id="u2", received=1.0, etype="forget"), {})
    assert dropped(ev(user_id="u9", anonymous_id="anon", received=49.0), FORGOTTEN)


def test_re_driven_records_lose_only_the_forgotten_events() -> None:
    keep, gone = ev(user_id="u2"), ev(user_id="u1", received=99.0)
    both = orjson.dumps(EventEnvelope(events=[keep, gone]).model_dump(exclude_none=True))
    scrubbed = scrub(both, FORGOTTEN)
    assert scrubbed is not None
    assert [e["user_id"] for e in orjson.loads(scrubbed)["events"]] == ["u2"]
    only = orjson.dumps(EventEnvelope(events=[gone]).model_dump(exclude_none=True))
    assert scrub(only, FORGOTTEN) is None
    clean = orjson.dumps(EventEnvelope(events=[keep]).model_dump(exclude_none=True))
    assert scrub(clean, FORGOTTEN) is clean
    assert scrub(b"not json", FORGOTTEN) == b"not json"  # the worker dead-letters it
