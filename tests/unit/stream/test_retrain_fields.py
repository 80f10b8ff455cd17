"""The full retrain reads event ids the way the worker's seen set keeps them."""

from __future__ import annotations

import orjson

from recommender.interactions import build_matrix_from_rows
from schemas import EventEnvelope, TopicEvent
from schemas.topic_plain import plain_events
from stream.decode import decode_events
from stream.forget import dropped
from stream.retrain_read import matrix_fields, plain_rows


def view(event_id: str, **who: str) -> TopicEvent:
    return TopicEvent(event_id=event_id, type="view", item_id="i1", ts=1_700_000_000.0,
                      **who)


def test_one_shoppers_event_id_does_not_drop_anothers_from_training() -> None:
    # An attacker holding the public key sends a victim's guessable id first.
    events = [view("e1", anonymous_id="attacker"), view("e1", user_id="victim")]
    data = build_matrix_from_rows(matrix_fields(ev) for ev in events)
    assert sorted(data.user_map.ids) == ["attacker", "victim"]


def test_a_retried_event_still_counts_once() -> None:
    events = [view("e1", user_id="u1"), view("e1", user_id="u1")]
    assert build_matrix_from_rows(matrix_fields(ev) for ev in events).n_events == 1


def test_the_shortcut_gives_the_models_rows_and_drops_alike() -> None:
    """Rows of :func:`schemas.topic_plain.plain_events` messages equal the models' rows,
    forgotten ids and ``forget`` events left out the same way."""
    events = [
        TopicEvent(event_id="e1", type="view", user_id="u1", item_id="i1", ts=5.0,
                   received_at=10.0),
        TopicEvent(event_id="e2", type="purchase", anonymous_id="a1", item_id="i2",
                   quantity=2, ts=6, received_at=11.0),
        TopicEvent(event_id="e3", type="view", user_id="gone", item_id="i1", ts=7.0,
                   received_at=12.0),
        TopicEvent(event_id="e4", type="view", user_id="gone", item_id="i1", ts=8.0,
                   received_at=30.0),
        TopicEvent(event_id="e5", type="forget", user_id="gone", ts=9.0, received_at=20.0),
    ]
    raw = orjson.dumps(EventEnvelope(events=events).model_dump(exclude_none=True))
    forgotten = {"gone": 20.0}
    plain = plain_events(raw)
    assert plain is not None
    expected = [matrix_fields(ev) for ev in decode_events(raw, partition=0, offset=0)
                if not dropped(ev, forgotten)]
    assert list(plain_rows(plain, forgotten)) == expected
    assert [row[0] for row in expected] == ["u1\x00e1", "a1\x00e2", "gone\x00e4"]
