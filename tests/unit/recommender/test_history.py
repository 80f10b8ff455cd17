"""History: bounded, idempotent per-entity event history."""

from __future__ import annotations

import gc
import json
import random

import orjson
import pytest

from recommender.handover import CART_COPY_PREFIX
from recommender.history import Entry, History


def ev(i: int, item: str = "x", kind: str = "view", ts: float | None = None) -> Entry:
    t = float(i if ts is None else ts)
    return (f"e{i}", item, kind, t, t)


def test_apply_returns_new_entries_and_ignores_known_event_ids() -> None:
    h = History()
    new = h.apply([ev(1, "a"), ev(2, "b"), ev(1, "a")], max_entries=10)
    assert new == [ev(1, "a"), ev(2, "b")]
    assert h.apply([ev(2, "b"), ev(1, "a")], max_entries=10) == []
    assert len(h) == 2
    assert h.event_ids == {"e1", "e2"}


def test_first_occurrence_of_an_id_wins_within_a_batch() -> None:
    h = History()
    h.apply([("dup", "a", "view", 5.0), ("dup", "b", "purchase", 6.0)], max_entries=10)
    assert h.entries == [("dup", "a", "view", 5.0, 5.0)]  # 4-tuples: received = ts
    assert not h.bought


def test_cap_keeps_newest_by_time_whatever_the_arrival_order() -> None:
    h = History()
    events = [ev(i, f"i{i}") for i in range(10)]
    random.Random(1).shuffle(events)
    new = h.apply(events, max_entries=4)
    assert [e[0] for e in h.entries] == ["e6", "e7", "e8", "e9"]
    assert new == h.entries  # evicted-in-the-same-call events are not reported


def test_event_older_than_a_full_history_is_dropped_but_fits_when_not_full() -> None:
    h = History()
    h.apply([ev(i) for i in range(5, 8)], max_entries=3)
    assert h.apply([ev(1)], max_entries=3) == []
    assert [e[0] for e in h.entries] == ["e5", "e6", "e7"]
    roomy = History()
    roomy.apply([ev(5)], max_entries=3)
    assert roomy.apply([ev(1)], max_entries=3) == [ev(1)]


def test_time_ties_are_broken_by_event_id() -> None:
    h = History()
    h.apply([("b", "x", "view", 1.0), ("a", "x", "view", 1.0)], max_entries=1)
    assert h.entries == [("b", "x", "view", 1.0, 1.0)]
    # "a" sorts before "b" at the same time, so it is older and stays out on replay.
    assert h.apply([("a", "x", "view", 1.0)], max_entries=1) == []


def test_replays_are_idempotent() -> None:
    rng = random.Random(7)
    events = [
        ev(i, f"i{rng.randrange(30)}", rng.choice(["view", "purchase"]), rng.random())
        for i in range(400)
    ]
    h = History()
    stream = events + rng.sample(events, 150)  # at-least-once: some redelivered
    rng.shuffle(stream)
    for start in range(0, len(stream), 37):
        h.apply(stream[start : start + 37], max_entries=50)
    snapshot = h.to_dict()
    expected = sorted(events, key=lambda e: (e[3], e[0]))[-50:]
    assert h.entries == expected

    replay = events[:]
    rng.shuffle(replay)
    for start in range(0, len(replay), 23):
        assert h.apply(replay[start : start + 23], max_entries=50) == []
    assert h.to_dict() == snapshot


def test_round_trip_through_json_with_alias_and_bought() -> None:
    h = History()
    h.apply([ev(2, "a", "purchase"), ev(1, "b")], max_entries=10)
    h.apply([("e3", "c", "view", 3.0, 9.0)], max_entries=10)
    assert h.link("u42", max_links=3)
    data = json.loads(json.dumps(h.to_dict()))
    assert data == {  # the receive time only where it differs from the event time
        "entries": [["e1", "b", "view", 1.0], ["e2", "a", "purchase", 2.0],
                    ["e3", "c", "view", 3.0, 9.0]],
        "alias": "u42",
        "bought": [["a", 2.0]],
    }
    back = History.from_dict(data)
    assert back == h
    # Values written before purchases had times still load.
    legacy = History.from_dict({"entries": [["e1", "b", "view", 1.0]], "alias": "u1",
                                "bought": ["z"]})
    assert legacy.bought == {"z": 0.0} and legacy.links == ["u1"]


def _linked_history() -> History:
    """A history with a cart add, a purchase, a receipt and two links."""
    h = History()
    h.apply([("e1", "a", "add_to_cart", 1.0, 2.0), ("e2", "b", "purchase", 3.0, 3.0)],
            max_entries=10, max_cart=5)
    h.note_receipt(("e1", "a", "add_to_cart", 1.0, 2.0), window_s=60.0, max_pairs=5)
    assert h.link("u1", max_links=3) and h.link("u2", max_links=3)
    return h


def test_from_dict_sets_every_field_as_the_constructor_would() -> None:
    # from_dict fills the fields itself (no __init__): a field added later must be too.
    h = _linked_history()
    h.handed = 4.0
    data = json.loads(json.dumps(h.to_dict()))
    back = History.from_dict(data)
    assert set(vars(back)) == {f for f in History.__dataclass_fields__}
    assert back == h == History(**vars(back))
    assert History.from_dict(None) == History()
    assert History.from_dict({}).to_dict() == {"entries": ()}


def test_to_dict_is_untracked_by_the_collector_and_encodes_as_lists_did() -> None:
    # Issue 14: the worker's table keeps every value; lists in it were walked at every
    # older-generation collection. Tuples of plain values are untracked once collected.
    h = _linked_history()
    h.handed_to = {"u1": 4.0}
    h.handed_copies = {"u1": "d"}
    value = h.to_dict()
    as_lists = json.loads(json.dumps(value))
    assert orjson.dumps(value) == orjson.dumps(as_lists)
    assert History.from_dict(as_lists) == History.from_dict(value) == h
    assert History.from_dict(value).entries[0] is value["entries"][0]  # kept, not rebuilt
    gc.collect()
    gc.collect()
    nested = [v for v in value.values() if isinstance(v, tuple)]
    assert len(nested) == 8 and not any(gc.is_tracked(v) for v in nested)


def test_bought_records_purchases_even_when_too_old_to_keep() -> None:
    h = History()
    h.apply([ev(10), ev(11)], max_entries=2)
    assert h.apply([ev(1, "old", "purchase")], max_entries=2) == []
    assert set(h.bought) == {"old"}


def test_bought_keeps_the_newest_purchases() -> None:
    h = History()
    h.apply([ev(i, f"p{i}", "purchase") for i in range(10)], max_entries=3, max_bought=4)
    assert set(h.bought) == {"p6", "p7", "p8", "p9"}
    h.apply([ev(20, "p0", "purchase")], max_entries=3, max_bought=4)  # bought again: newest
    assert set(h.bought) == {"p0", "p7", "p8", "p9"}


def test_the_cart_is_followed_beyond_the_history_cap_and_handed_over() -> None:
    # An identify hands over the whole cart, also items whose addition the capped
    # history no longer holds (they were reported as not handed over).
    h = History()
    h.apply([ev(1, "kept", "add_to_cart"), ev(2, "gone", "add_to_cart"),
             ev(3, "bought", "add_to_cart"), ev(4, "gone", "remove_from_cart"),
             ev(5, "bought", "purchase"), *(ev(i) for i in range(6, 20))],
            max_entries=3, max_cart=10)
    assert h.cart == {"kept": 1.0} and len(h.entries) == 3
    h = History.from_dict(json.loads(json.dumps(h.to_dict())))
    copies = [e for e in h.handover() if e[0].startswith(CART_COPY_PREFIX)]
    assert [(item, kind, ts) for _, item, kind, ts, _ in copies] == [
        ("kept", "add_to_cart", 1.0)]
    assert [e[0] for e in History.from_dict(h.to_dict()).handover()] == \
        [e[0] for e in h.handover()]  # the same ids at every identify
    # An addition the history still holds is handed over as itself, not copied.
    h.apply([ev(30, "late", "add_to_cart")], max_entries=3, max_cart=10)
    assert not [e for e in h.handover() if e[1] == "late" and e[0] != "e30"]


def test_the_cart_follows_event_times_and_its_cap() -> None:
    h = History()
    # An older addition applied after a newer removal does not bring the item back.
    h.apply([ev(5, "a", "remove_from_cart"), ev(2, "a", "add_to_cart")],
            max_entries=10, max_cart=2)
    assert h.cart == {}
    h.apply([ev(6, "a", "add_to_cart"), ev(7, "b", "add_to_cart"),
             ev(8, "c", "add_to_cart")], max_entries=10, max_cart=2)
    assert h.cart == {"b": 7.0, "c": 8.0}  # the newest cart_max, as in Redis
    h.apply([ev(i, f"r{i}", "remove_from_cart") for i in range(10, 20)],
            max_entries=10, max_cart=2)
    assert len(h.uncarted) == 4
    back = History.from_dict(json.loads(json.dumps(h.to_dict())))
    assert (back.cart, back.uncarted) == (h.cart, h.uncarted)  # both survive the table
    # Without max_cart (a user's history) nothing is followed.
    u = History()
    u.apply([ev(1, "a", "add_to_cart")], max_entries=10)
    assert u.cart == {} and "cart" not in u.to_dict()


def test_an_anonymous_id_links_to_a_bounded_number_of_users() -> None:
    h = History()
    assert h.link("u1", max_links=2) and h.link("u2", max_links=2)
    assert not h.link("u3", max_links=2) and h.alias == "u2"
    assert h.link("u1", max_links=2) and h.alias == "u1"  # a known user may come back
    assert History.from_dict(h.to_dict()).links == ["u1", "u2"]


def test_item_weights_sum_and_clamp() -> None:
    h = History()
    h.apply(
        [
            ev(1, "a", "view"),
            ev(2, "a", "add_to_cart"),
            ev(3, "a", "remove_from_cart"),  # a: 1 + 3 - 2 = 2
            ev(4, "b", "view"),
            ev(5, "b", "remove_from_cart"),  # b: -1 -> dropped
            ev(6, "c", "impression"),  # c: 0 -> dropped
            ev(7, "d", "purchase"),
        ],
        max_entries=20,
    )
    assert h.item_weights() == {"a": pytest.approx(2.0), "d": 6.0}


def test_recent_items_distinct_newest_first() -> None:
    h = History()
    h.apply(
        [
            ev(1, "a"),
            ev(2, "b"),
            ev(3, "a", "add_to_cart"),
            ev(4, "c", "impression"),
            ev(5, "d", "remove_from_cart"),
            ev(6, "e", "click"),
        ],
        max_entries=20,
    )
    assert h.recent_items(10) == ["e", "a", "b"]
    assert h.recent_items(2) == ["e", "a"]
    assert h.recent_items(0) == []
    assert h.recent_items(10, before_ts=3.0) == ["b", "a"]


def test_invalid_cap_is_rejected() -> None:
    with pytest.raises(ValueError):
        History().apply([ev(1)], max_entries=0)
