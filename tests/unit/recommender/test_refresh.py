"""The worker's refresh steps (shared with the evaluator's replay)."""

from __future__ import annotations

import numpy as np
import pytest

from recommender.foldin import gramian
from recommender.idmap import IdMap
from recommender.refresh import REASONS, RefreshSweep, entity_blend, grown, refold_rows
from stream.redis_writer import dumps_list

RNG = np.random.default_rng(0)
FACTORS = RNG.normal(size=(60, 8)).astype(np.float32)
ITEMS = IdMap([f"i{j}" for j in range(60)])


def _lists(**kw: object) -> list[tuple[int, list[str], np.ndarray]]:
    weights = [{"i1": 1.0, "i2": 3.0}, {}, {"unknown": 1.0}, {"i5": 1.0, "i6": 6.0}]
    rows = refold_rows(weights, item_map=ITEMS, item_factors=FACTORS, yty=gramian(FACTORS),
                       regularization=1.0, alpha=2.0, n=10, **kw)  # type: ignore[arg-type]
    return [(pos, ITEMS.ids_of(ids), vals) for pos, ids, vals in rows]


def test_only_entities_with_known_items_get_lists_without_their_own_items() -> None:
    out = _lists()
    assert [pos for pos, _, _ in out] == [0, 3]
    for _, ids, scores in out:
        assert len(ids) == 10 and not {"i1", "i2", "i5", "i6"} & set(ids)
        assert list(scores) == sorted(scores, reverse=True)


def test_a_pool_plus_the_whole_neighbourhood_ranks_like_all_items() -> None:
    full = _lists()
    pool = np.arange(0, 60, 7, dtype=np.int64)
    narrow = _lists(pool=pool)
    assert all(set(ids) <= set(ITEMS.ids_of(pool)) for _, ids, _ in narrow)
    wide = _lists(pool=pool, neighbours=[set(ITEMS.ids)] * 4)
    assert [ids for _, ids, _ in wide] == [ids for _, ids, _ in full]
    for (_, _, a), (_, _, b) in zip(wide, full, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5)


def test_the_neighbourhood_adds_only_its_own_items() -> None:
    pool = np.arange(0, 60, 7, dtype=np.int64)
    near = {"i3", "i4", "unknown", "i1"}  # i1 is the entity's own: never listed
    out = _lists(pool=pool, neighbours=[near, set(), set(), set()])
    allowed = set(ITEMS.ids_of(pool)) | {"i3", "i4"}
    assert set(out[0][1]) <= allowed and {"i3", "i4"} & set(out[0][1])


def test_growth_trigger() -> None:
    assert not grown(49, 1000, 0.05)
    assert grown(50, 1000, 0.05)
    assert not grown(10**9, 1000, 0.0)
    assert grown(1, 0, 0.05)  # nothing trained on yet: any new event counts


def test_blend_of_an_entity_excludes_known_items_and_names_sources() -> None:
    ranked = entity_blend(
        n=5, personal=[("a", 3.0), ("seen", 2.0), ("b", 1.0)],
        session=[[("c", 5.0), ("a", 1.0)]], similar=[[("d", 0.9)]],
        trending=[("t", 9.0)], popular=[("p", 99.0)], known={"seen"}, history_size=4)
    ids = [b.item_id for b in ranked]
    assert ids[0] == "a" and "seen" not in ids and len(ids) == 5
    assert {b.source for b in ranked} <= set(REASONS)
    body = dumps_list("v1", ids, [b.score for b in ranked],
                      reasons=[REASONS[b.source] for b in ranked])
    assert b'"personalized"' in body


def test_sweep_relists_recent_entities_newest_first_once_per_version() -> None:
    sweep = RefreshSweep(capacity=3, per_batch=2)
    assert sweep.take(None) == []  # no model yet: nothing to re-list
    sweep.touched(["a", "b", "c", "d"], ts=10.0)  # capacity 3: "a" is forgotten
    sweep.touched(["b"], ts=11.0)  # active again: now the newest
    assert sweep.take("v1", skip={"d"}) == ["b", "c"]  # "d" is in the batch anyway
    assert sweep.take("v1") == []  # "d" was skipped, not deferred; nothing until v2
    assert sweep.take("v2") == ["b", "d"]
    assert sweep.pending == 1
    assert sweep.take("v2") == ["c"]
    sweep.forget()
    assert sweep.take("v3") == []


def test_entities_given_back_are_taken_next_in_the_order_taken() -> None:
    """A step Redis failed gives its swept entities back; the next take answers them."""
    sweep = RefreshSweep(capacity=5, per_batch=2)
    sweep.touched(["a", "b", "c"], ts=10.0)
    taken = sweep.take("v1")
    assert taken == ["c", "b"]
    sweep.give_back(taken)
    assert sweep.take("v1") == ["c", "b"]
    assert sweep.take("v1") == ["a"]


def test_sweep_off_remembers_nothing() -> None:
    sweep = RefreshSweep(capacity=0, per_batch=10)
    sweep.touched(["a"], ts=0.0)
    assert sweep.take("v1") == []


def test_sweep_skips_entities_outside_the_window() -> None:
    sweep = RefreshSweep(capacity=10, per_batch=10, window_s=60.0)
    sweep.touched(["old"], ts=0.0)
    sweep.touched(["recent"], ts=50.0)
    sweep.touched(["now"], ts=100.0)
    assert sweep.take("v1") == ["now", "recent"]  # "old" was active 100 s ago


@pytest.mark.parametrize("seed", range(10))
def test_neighbourhood_merge_ranks_like_a_per_entity_sort(seed: int) -> None:
    # Integer factors: exact dot products and many ties, so the order is checked exactly
    # (best first, ties by ascending item row) against a plain sort per entity.
    from recommender.refresh import _with_neighbours
    from recommender.topn import top_n

    rng = np.random.default_rng(seed)
    n_items, n = 50, 5
    items = rng.integers(-2, 3, size=(n_items, 3)).astype(np.float32)
    users = rng.integers(-2, 3, size=(6, 3)).astype(np.float32)
    pool = np.sort(rng.choice(n_items, 20, replace=False)).astype(np.int64)
    own = [rng.choice(n_items, 3, replace=False).astype(np.int64) for _ in range(6)]
    scores = users @ items[pool].T
    scores[0, 2:] = -np.inf  # a pool list shorter than n: every neighbour may enter
    for e, mine in enumerate(own):
        scores[e, np.isin(pool, mine)] = -np.inf
    idx, vals = top_n(scores, n)
    idx = np.where(idx >= 0, pool[np.maximum(idx, 0)], -1)
    near = [rng.integers(-1, n_items, size=int(rng.integers(0, 25))) for _ in range(6)]
    rows = [(mine, np.ones(mine.size, dtype=np.float32)) for mine in own]
    out_i, out_v = _with_neighbours(idx, vals, users, rows, list(range(6)), items, pool,
                                    near, n)
    for e in range(6):
        cands = {int(i): float(v) for i, v in zip(idx[e], vals[e], strict=True) if i >= 0}
        for c in near[e].tolist():
            if c >= 0 and c not in pool and c not in own[e]:
                cands[c] = float(users[e] @ items[c])
        want = sorted(cands.items(), key=lambda t: (-t[1], t[0]))[:n]
        got = [(int(i), float(v)) for i, v in zip(out_i[e], out_v[e], strict=True) if i >= 0]
        assert got == want
