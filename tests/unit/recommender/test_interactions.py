"""Interaction matrix from topic events: dedupe, identify aliases, weights."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from recommender.idmap import IdMap
from recommender.interactions import build_matrix, entity_of, resolve_entities


def e(
    event_id: str,
    kind: str,
    *,
    user: str | None = None,
    anon: str | None = None,
    item: str | None = "x",
    quantity: int | None = None,
    ts: float = 1.0,
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": kind,
        "user_id": user,
        "anonymous_id": anon,
        "item_id": item,
        "quantity": quantity,
        "ts": ts,
    }


def dense(events: list[dict[str, Any]]) -> dict[tuple[str, str], float]:
    built = build_matrix(events)
    coo = built.matrix.tocoo()
    return {
        (built.user_map.id_of(int(r)), built.item_map.id_of(int(c))): float(v)
        for r, c, v in zip(coo.row, coo.col, coo.data, strict=True)
    }


def test_weights_sum_per_user_and_item() -> None:
    events = [
        e("1", "view", user="u1", item="a"),
        e("2", "add_to_cart", user="u1", item="a"),
        e("3", "purchase", user="u1", item="b", quantity=1),
        e("4", "click", user="u2", item="a"),
    ]
    built = build_matrix(events)
    assert built.matrix.dtype == np.float32
    assert built.matrix.shape == (2, 2)
    assert built.n_events == 4
    assert dense(events) == {("u1", "a"): 4.0, ("u1", "b"): 6.0, ("u2", "a"): 1.0}


def test_duplicate_event_ids_count_once_first_wins() -> None:
    events = [
        e("1", "purchase", user="u1", item="a"),
        e("1", "purchase", user="u1", item="a"),
        e("1", "view", user="u1", item="b"),  # same id, different payload: ignored
        e("2", "view", user="u1", item="a"),
    ]
    assert dense(events) == {("u1", "a"): 7.0}
    assert build_matrix(events).n_events == 2


def test_an_event_id_seen_first_on_an_event_the_matrix_drops_still_wins() -> None:
    # As in the worker's seen set: the id was taken by the impression (weight 0) and the
    # identify; the later events with those ids do not count.
    events = [
        e("1", "impression", user="u1", item="a"),
        e("1", "purchase", user="u1", item="a"),
        e("2", "identify", user="u1", anon="a1", item=None),
        e("2", "view", user="u1", item="b"),
        e("3", "view", user="u1", item="c"),
    ]
    assert dense(events) == {("u1", "c"): 1.0}


def test_identify_merges_anonymous_events_before_and_after() -> None:
    events = [
        e("1", "view", anon="anon-1", item="a"),
        e("2", "identify", anon="anon-1", user="u1", item=None),
        e("3", "add_to_cart", anon="anon-1", item="b"),
        e("4", "purchase", user="u1", item="c"),
        e("5", "view", anon="anon-2", item="a"),  # never identified: its own row
    ]
    assert dense(events) == {
        ("u1", "a"): 1.0,
        ("u1", "b"): 3.0,
        ("u1", "c"): 6.0,
        ("anon-2", "a"): 1.0,
    }


def test_identify_read_after_the_events_still_applies() -> None:
    events = [
        e("1", "view", anon="anon-1", item="a"),
        e("2", "view", anon="anon-1", item="b"),
        e("3", "identify", anon="anon-1", user="u1", item=None, ts=0.5),
    ]
    assert dense(events) == {("u1", "a"): 1.0, ("u1", "b"): 1.0}


def test_user_id_wins_over_anonymous_id_and_last_identify_wins() -> None:
    events = [
        e("1", "identify", anon="anon-1", user="u1", item=None),
        e("2", "identify", anon="anon-1", user="u2", item=None),
        e("3", "view", user="u9", anon="anon-1", item="a"),
        e("4", "view", anon="anon-1", item="b"),
    ]
    assert resolve_entities(events) == {"anon-1": "u2"}
    assert entity_of(events[2], {"anon-1": "u2"}) == "u9"
    assert entity_of(events[3], {"anon-1": "u2"}) == "u2"
    assert entity_of({"user_id": None, "anonymous_id": None}, {}) is None
    assert dense(events) == {("u9", "a"): 1.0, ("u2", "b"): 1.0}


def test_identifies_beyond_the_link_bound_are_ignored_as_the_worker_ignores_them() -> None:
    """An anonymous id identified as many users keeps the alias the worker kept: the last
    of its first ``max_links`` distinct users (re-identifying one of them still counts)."""
    events = [e(str(n), "identify", anon="anon-1", user=f"u{n}", item=None) for n in range(5)]
    events += [e("9", "view", anon="anon-1", item="b")]
    assert resolve_entities(events, max_links=2) == {"anon-1": "u1"}
    assert resolve_entities(events) == {"anon-1": "u4"}
    again = events[:5] + [e("8", "identify", anon="anon-1", user="u0", item=None), events[5]]
    assert resolve_entities(again, max_links=2) == {"anon-1": "u0"}
    data = build_matrix(events, max_links=2)
    assert data.user_map.ids == ["u1"]


def test_impressions_and_negative_totals_leave_no_rows_or_columns() -> None:
    events = [
        e("1", "impression", user="u1", item="a"),
        e("2", "view", user="u2", item="b"),
        e("3", "remove_from_cart", user="u2", item="b"),  # 1 - 2 < 0 -> clamped to 0
        e("4", "view", user="u3", item="c"),
        e("5", "view", user="u3", item=None),  # no item: ignored
    ]
    built = build_matrix(events)
    assert built.user_map.ids == ["u3"]
    assert built.item_map.ids == ["c"]
    assert built.matrix.toarray().tolist() == [[1.0]]
    assert built.n_events == 3  # the view, the removal and u3's view were summed


def test_given_maps_are_copied_and_their_order_kept() -> None:
    users, items = IdMap(["u2", "ghost"]), IdMap(["b", "unused"])
    events = [e("1", "view", user="u1", item="a"), e("2", "view", user="u2", item="b")]
    compact = build_matrix(events, user_map=users, item_map=items)
    assert compact.user_map.ids == ["u2", "u1"]
    assert compact.item_map.ids == ["b", "a"]
    assert compact.matrix.toarray().tolist() == [[1.0, 0.0], [0.0, 1.0]]
    full = build_matrix(events, user_map=users, item_map=items, drop_empty=False)
    assert full.user_map.ids == ["u2", "ghost", "u1"]
    assert full.item_map.ids == ["b", "unused", "a"]
    assert full.matrix.shape == (3, 3)
    assert users.ids == ["u2", "ghost"] and items.ids == ["b", "unused"]


def test_purchase_quantity_and_empty_input() -> None:
    built = build_matrix([e("1", "purchase", user="u", item="a", quantity=3)])
    assert built.matrix[0, 0] == pytest.approx(6.0 * (1 + np.log(3)), rel=1e-6)
    empty = build_matrix([])
    assert empty.matrix.shape == (0, 0)
    assert empty.n_events == 0


def test_rows_follow_each_entitys_first_event_once_aliases_are_resolved() -> None:
    # Rows are given as the events come, but an anonymous id's user is known only at
    # its identify: the user's row sits where the anonymous id's first event was.
    from recommender.interactions import build_matrix_from_rows

    rows = [("1", "view", "u2", None, "b", None, 1.0),
            ("2", "view", None, "anon-1", "a", None, 2.0),
            ("3", "view", "u3", None, "c", None, 3.0),
            ("4", "view", "u1", None, "a", None, 4.0),
            ("5", "view", None, "anon-2", "d", None, 5.0),
            ("6", "identify", "u1", "anon-1", None, None, 6.0)]
    data = build_matrix_from_rows(iter(rows))
    assert data.user_map.ids == ["u2", "u1", "u3", "anon-2"]
    assert data.item_map.ids == ["b", "a", "c", "d"]
    assert data.n_events == 5
