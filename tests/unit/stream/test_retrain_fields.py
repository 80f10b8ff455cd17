"""The full retrain reads event ids the way the worker's seen set keeps them."""

from __future__ import annotations

from recommender.interactions import build_matrix_from_rows
from schemas import TopicEvent
from stream.retrain_read import matrix_fields


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
