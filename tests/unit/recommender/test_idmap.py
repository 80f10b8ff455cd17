"""IdMap: stable dense indices for string ids."""

from __future__ import annotations

import numpy as np
import pytest

from recommender.idmap import IdMap


def test_initial_ids_are_indexed_in_order_and_duplicates_keep_first_index() -> None:
    m = IdMap(["a", "b", "a", "c"])
    assert m.ids == ["a", "b", "c"]
    assert len(m) == 3
    assert [m.index(x) for x in "abc"] == [0, 1, 2]


def test_lookup_never_grows_and_add_appends() -> None:
    m = IdMap(["a"])
    assert m.index("zz") is None
    assert len(m) == 1
    assert m.add("zz") == 1
    assert m.add("zz") == 1
    assert "zz" in m and "nope" not in m
    assert m.id_of(1) == "zz"


def test_indices_marks_unknown_or_adds() -> None:
    m = IdMap(["a", "b"])
    got = m.indices(["b", "x", "a"])
    assert got.dtype == np.int64
    assert got.tolist() == [1, -1, 0]
    assert len(m) == 2
    assert m.indices(["b", "x", "y", "x"], add=True).tolist() == [1, 2, 3, 2]
    assert m.ids == ["a", "b", "x", "y"]
    assert m.indices([]).shape == (0,)


def test_id_of_rejects_out_of_range_and_negative() -> None:
    m = IdMap(["a"])
    with pytest.raises(IndexError):
        m.id_of(1)
    with pytest.raises(IndexError):
        m.id_of(-1)


def test_ids_of_skips_padding_and_ids_is_a_copy() -> None:
    m = IdMap(["a", "b", "c"])
    assert m.ids_of(np.array([2, 0, -1, -1])) == ["c", "a"]
    ids = m.ids
    ids.append("mutated")
    assert len(m) == 3
    assert list(m) == ["a", "b", "c"]


def test_add_all_gives_what_one_by_one_adds_give() -> None:
    ids = ["b", "a", "b", "c", "a", "d"]
    one_by_one = IdMap(["a"])
    expected = [one_by_one.add(i) for i in ids]
    at_once = IdMap(["a"])
    assert at_once.add_all(ids).tolist() == expected
    assert at_once.ids == one_by_one.ids == ["a", "b", "c", "d"]
    assert at_once.add("e") == 4 and at_once.id_of(4) == "e"
    assert at_once.add_all([]).tolist() == []


def test_id_list_is_the_ids_in_index_order() -> None:
    ids = IdMap(["x", "y"])
    assert list(ids.id_list) == ["x", "y"]
    ids.add("z")
    assert ids.id_list[2] == "z"
