"""Recency decay: one definition shared by the retrain matrix and the worker's fold-in row."""

from __future__ import annotations

import math

import pytest

from recommender.history import History
from recommender.interactions import build_matrix
from recommender.weights import DECAY_HALF_LIFE_S, recency_decay


def test_recency_decay_halves_per_half_life_relative_to_the_newest_event() -> None:
    assert recency_decay(100.0, 100.0, 10.0) == 1.0
    assert recency_decay(90.0, 100.0, 10.0) == pytest.approx(0.5)
    assert recency_decay(70.0, 100.0, 10.0) == pytest.approx(0.125)
    assert recency_decay(110.0, 100.0, 10.0) == 1.0  # never above 1
    assert recency_decay(0.0, 1e9, math.inf) == 1.0
    assert recency_decay(0.0, 1e9, 0.0) == 1.0  # non-positive: off
    assert recency_decay(0.0, 1e9) == (1.0 if math.isinf(DECAY_HALF_LIFE_S) else
                                      recency_decay(0.0, 1e9, DECAY_HALF_LIFE_S))


def test_matrix_row_and_history_row_agree_under_decay() -> None:
    events = [
        {"event_id": "1", "type": "view", "user_id": "u", "item_id": "a", "ts": 0.0},
        {"event_id": "2", "type": "add_to_cart", "user_id": "u", "item_id": "a", "ts": 10.0},
        {"event_id": "3", "type": "view", "user_id": "u", "item_id": "b", "ts": 20.0},
        {"event_id": "4", "type": "view", "user_id": "v", "item_id": "a", "ts": 500.0},
    ]
    built = build_matrix(events, half_life_s=10.0)
    row = built.matrix[built.user_map.index("u")].toarray()[0]
    a, b = built.item_map.index("a"), built.item_map.index("b")
    assert a is not None and b is not None
    # a: 1 * 2^-2 + 3 * 2^-1 = 1.75; b: 1 (newest); v's later event does not age u's.
    assert row[a] == pytest.approx(1.75)
    assert row[b] == pytest.approx(1.0)
    hist = History()
    hist.apply([(e["event_id"], e["item_id"], e["type"], e["ts"]) for e in events[:3]],
               max_entries=10)
    assert hist.item_weights(half_life_s=10.0) == pytest.approx({"a": 1.75, "b": 1.0})
    assert hist.item_weights() == pytest.approx({"a": 4.0, "b": 1.0})  # default: no decay
