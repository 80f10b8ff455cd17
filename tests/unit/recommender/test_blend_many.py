"""The vectorised blend of many entities gives exactly the per-entity blend's lists."""

from __future__ import annotations

import random

import numpy as np
import pytest

from recommender.blend import BlendWeights
from recommender.blend_many import blend_many
from recommender.refresh import entity_blend


def scored(rng: random.Random, pool: int, size: int, *, ties: bool) -> list[tuple[str, float]]:
    items = rng.sample(range(pool), min(size, pool))
    return [(f"i{i}", float(rng.randint(1, 4)) if ties else rng.random()) for i in items]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("weights", [BlendWeights(), BlendWeights(evidence=0.0, recency=0.0),
                                     BlendWeights(similar=0.0, personal=1.0)])
def test_same_lists_as_entity_blend(seed: int, weights: BlendWeights) -> None:
    rng = random.Random(seed)
    pool = 60  # small, so sources overlap, scores tie and known items hit candidates
    per_item = {f"i{i}": scored(rng, pool, rng.randint(0, 15), ties=seed % 2 == 0)
                for i in range(pool)}
    trending, popular = scored(rng, pool, 20, ties=True), scored(rng, pool, 25, ties=False)
    m = 40
    personal, session, similar, known, sizes = [], [], [], [], []
    for e in range(m):
        recent = [f"i{i}" for i in rng.sample(range(pool), rng.randint(0, 6))]
        personal.append(scored(rng, pool, rng.choice([0, 5, 30]), ties=False))
        session.append([per_item[i] for i in recent])
        similar.append([per_item[i] for i in recent[:3] if rng.random() < 0.7])
        known.append(set(recent) | {f"x{e}"})
        sizes.append(len(recent) if e % 7 else 0)
    n = rng.choice([5, 10, 100])
    got = blend_many(n=n, personal=personal, session=session, similar=similar,
                     trending=trending, popular=popular, known=known, history_size=sizes,
                     weights=weights)
    assert len(got) == m
    for e in range(m):
        want = entity_blend(n=n, personal=personal[e], session=session[e],
                            similar=similar[e], trending=trending, popular=popular,
                            known=known[e], history_size=sizes[e], weights=weights)
        assert got[e].ids == [b.item_id for b in want]
        assert got[e].sources == [b.source for b in want]
        assert got[e].scores.tolist() == [b.score for b in want]  # bit-identical


def test_nothing_to_blend() -> None:
    got = blend_many(n=10, personal=[[], []], session=[[], []], similar=[[], []],
                     trending=[], popular=[], known=[set(), set()], history_size=[0, 0])
    assert [g.ids for g in got] == [[], []]
    assert blend_many(n=0, personal=[[("a", 1.0)]], session=[[]], similar=[[]],
                      trending=[], popular=[], known=[set()], history_size=[1])[0].ids == []
    assert isinstance(got[0].scores, np.ndarray)


def test_model_codes_give_the_same_lists() -> None:
    from recommender.blend_many import ItemCodes
    from recommender.idmap import IdMap

    rng = random.Random(9)
    per_item = {f"i{i}": scored(rng, 40, 12, ties=True) for i in range(40)}
    recent = [[f"i{i}" for i in rng.sample(range(40), 4)] for _ in range(10)]
    args = dict(n=20, personal=[scored(rng, 40, 10, ties=False) for _ in range(10)],
                session=[[per_item[i] for i in r] for r in recent],
                similar=[[per_item[i] for i in r[:2]] for r in recent],
                trending=scored(rng, 40, 10, ties=True), popular=scored(rng, 40, 10, ties=True),
                known=[set(r) for r in recent], history_size=[4] * 10)
    codes = ItemCodes(IdMap(f"i{i}" for i in range(0, 40, 2)))  # the model knows half
    rows = codes.rows(per_item["i3"])
    assert all(0 <= r < codes.size for r in rows)
    plain = blend_many(**args)  # type: ignore[arg-type]
    coded = blend_many(**args, codes=codes)  # type: ignore[arg-type]
    assert [(b.ids, b.sources, b.scores.tolist()) for b in plain] == [
        (b.ids, b.sources, b.scores.tolist()) for b in coded]


def test_personal_lists_as_model_rows() -> None:
    from recommender.blend_many import ItemCodes
    from recommender.idmap import IdMap

    item_map = IdMap(f"i{i}" for i in range(30))
    rng = random.Random(2)
    rows = [np.array(rng.sample(range(30), 8), dtype=np.int64) for _ in range(5)]
    pairs = [[(f"i{r}", 1.0) for r in row.tolist()] for row in rows]
    common = dict(n=10, session=[[]] * 5, similar=[[]] * 5, trending=scored(rng, 30, 10, ties=True),
                  popular=[], known=[{"i1"}] * 5, history_size=[3] * 5)
    by_pairs = blend_many(personal=pairs, **common)  # type: ignore[arg-type]
    by_rows = blend_many(personal=rows, codes=ItemCodes(item_map), **common)  # type: ignore[arg-type]
    assert [(b.ids, b.sources) for b in by_pairs] == [(b.ids, b.sources) for b in by_rows]


def test_names_of_translates_model_rows_and_new_ids() -> None:
    from recommender.blend_many import ItemCodes
    from recommender.idmap import IdMap

    codes = ItemCodes(IdMap(["a", "b", "c"]))
    new = codes.ids(["c", "x", "a", "y"])
    assert new.tolist() == [2, 3, 0, 4]
    assert codes.names_of(np.array([1, 0, 2], dtype=np.int64)) == ["b", "a", "c"]
    assert codes.names_of(np.array([4, 1, 3], dtype=np.int64)) == ["y", "b", "x"]
    assert codes.names_of(np.zeros(0, dtype=np.int64)) == []
    bare = ItemCodes()
    bare.ids(["p", "q"])
    assert bare.names_of(np.array([1, 0], dtype=np.int64)) == ["q", "p"]


def test_code_all_gives_the_codes_of_one_by_one_coding() -> None:
    from recommender.blend_many import ItemCodes, RowList
    from recommender.idmap import IdMap

    lists = [[("b", 2.0), ("x", 1.0)], [], [("y", 3.0), ("a", 0.5), ("x", 0.25)]]
    rows = RowList(np.array([0, 2], dtype=np.int64), np.array([1.0, 0.5]))
    one = ItemCodes(IdMap(["a", "b", "c"]))
    want = [one.scored(lst) for lst in lists]
    every = ItemCodes(IdMap(["a", "b", "c"]))
    every.code_all([*lists, rows, lists[0]])
    for lst, (codes, scores) in zip(lists, want, strict=True):
        got_codes, got_scores = every.scored(lst)
        assert got_codes.tolist() == codes.tolist() and got_scores.tolist() == scores.tolist()
    assert every.extra == one.extra == {"x": 3, "y": 4}
    assert every.rows(lists[2]).tolist() == [0]
    assert every.rows(rows).tolist() == [0, 2]


@pytest.mark.parametrize("seed", range(5))
def test_ranking_is_the_three_key_lexsort(seed: int) -> None:
    from recommender.blend_many import _ranking

    rng = np.random.default_rng(seed)
    size = int(rng.integers(1, 400)) + (1000 if seed % 2 else 0)  # both methods
    ent = np.sort(rng.integers(0, 7, size=size))
    total = rng.integers(0, 5, size=size) / 4.0  # many equal totals
    total[rng.random(size) < 0.1] = -0.0
    first = rng.permutation(size * 3)[:size].astype(np.int64)
    want = np.lexsort((first, -total, ent))
    assert _ranking(ent, total, first).tolist() == want.tolist()
    assert _ranking(ent[:0], total[:0], first[:0]).size == 0
