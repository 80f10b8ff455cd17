"""Top-N selection, batched recommendation and similar items."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import recommender.topn as topn_module
from recommender.topn import recommend_batch, similar_items, top_n


def test_top_n_orders_descending_with_index_tiebreak() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.9, 0.3], [5.0, 4.0, 3.0, 2.0, 1.0]], dtype=np.float32)
    idx, vals = top_n(scores, 3)
    assert idx.tolist() == [[1, 3, 2], [0, 1, 2]]
    np.testing.assert_allclose(vals, [[0.9, 0.9, 0.5], [5.0, 4.0, 3.0]])
    assert vals.dtype == np.float32
    before = scores.copy()
    top_n(scores, 2, exclude=[np.array([1]), np.array([0])])
    np.testing.assert_array_equal(scores, before)  # input untouched


def test_top_n_matches_a_full_sort() -> None:
    rng = np.random.default_rng(0)
    scores = rng.random((7, 300))
    idx, vals = top_n(scores, 25)
    want = np.argsort(-scores, axis=1)[:, :25]
    np.testing.assert_array_equal(idx, want)
    np.testing.assert_array_equal(vals, np.take_along_axis(scores, want, axis=1))


def test_top_n_exclusion_and_padding() -> None:
    scores = np.array([[4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0]])
    idx, vals = top_n(scores, 3, exclude=[np.array([0, 2]), np.array([3, -1, 42])])
    assert idx.tolist() == [[1, 3, -1], [2, 1, 0]]
    assert vals[0].tolist() == [3.0, 1.0, -np.inf]
    idx, vals = top_n(scores, 6)
    assert idx.shape == (2, 6)
    assert idx[0].tolist() == [0, 1, 2, 3, -1, -1]
    assert np.isneginf(vals[:, 4:]).all()
    assert top_n(scores, 0)[0].shape == (2, 0)


def test_top_n_one_dimensional_and_nan() -> None:
    scores = np.array([0.2, np.nan, 0.7, 0.1])
    idx, vals = top_n(scores, 3, exclude=np.array([2]))
    assert idx.tolist() == [0, 3, -1]
    assert vals[:2].tolist() == [0.2, 0.1]
    idx, _ = top_n(scores, 2, exclude=[0])
    assert idx.tolist() == [2, 3]
    idx, _ = top_n(np.array([1, 3, 2]), 2, exclude=[np.array([1])])
    assert idx.tolist() == [2, 0]
    with pytest.raises(ValueError):
        top_n(np.zeros((2, 3)), 1, exclude=[np.array([0])])


def test_recommend_batch_agrees_with_top_n_across_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    users = rng.standard_normal((23, 6)).astype(np.float32)
    items = rng.standard_normal((40, 6)).astype(np.float32)
    seen = sp.random(23, 40, density=0.2, format="csr", random_state=2)
    seen.data[:] = 1.0
    scores = users @ items.T
    want_idx, want_vals = top_n(scores, 8, exclude=[row.indices for row in seen])
    idx, vals = recommend_batch(users, items, n=8, exclude_rows=seen, chunk=5)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_allclose(vals, want_vals, rtol=1e-5)
    for u in range(23):
        assert not set(idx[u]) & set(seen[u].indices)
    monkeypatch.setattr(topn_module, "MAX_BLOCK_VALUES", 40)  # one user per block
    idx2, _ = recommend_batch(users, items, n=8, exclude_rows=seen)
    np.testing.assert_array_equal(idx2, want_idx)


def test_recommend_batch_pads_when_everything_is_excluded() -> None:
    users = np.ones((2, 2), dtype=np.float32)
    items = np.eye(2, dtype=np.float32)
    seen = sp.csr_matrix(np.array([[1, 1], [1, 0]]))
    idx, vals = recommend_batch(users, items, n=3, exclude_rows=seen)
    assert idx.tolist() == [[-1, -1, -1], [1, -1, -1]]
    assert vals.dtype == np.float32 and np.isneginf(vals[0]).all()
    with pytest.raises(ValueError):
        recommend_batch(users, items, n=1, exclude_rows=sp.csr_matrix((3, 2)))


def test_similar_items_is_cosine_and_never_self() -> None:
    items = np.array(
        [[1.0, 0.0], [10.0, 0.5], [0.0, 1.0], [0.1, 3.0], [0.0, 0.0], [-1.0, 0.0]],
        dtype=np.float32,
    )
    idx, sims = similar_items(items, n=3, chunk=2)
    assert idx.shape == (6, 3)
    assert idx[0, 0] == 1  # parallel-ish, despite the very different length
    assert idx[2, 0] == 3
    assert (idx != np.arange(6)[:, None]).all()
    assert 4 not in idx  # a zero vector is nobody's neighbour
    assert idx[4].tolist() == [-1, -1, -1]
    assert sims[0, 0] == pytest.approx(10.0 / np.hypot(10.0, 0.5), rel=1e-5)
    assert sims[5, -1] == pytest.approx(-10.0 / np.hypot(10.0, 0.5), rel=1e-5)
    assert np.all(np.diff(sims[:4], axis=1) <= 0)


def test_overwrite_gives_the_same_result_without_a_copy() -> None:
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 5, size=(4, 30)).astype(np.float32)  # many ties
    scores[1, 3] = np.nan
    want = top_n(scores.copy(), 6, exclude=[[0], [], [2, 5], [-1]])
    work = scores.copy()
    got = top_n(work, 6, exclude=[[0], [], [2, 5], [-1]], overwrite=True)
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    assert work[0, 0] == -np.inf and work[1, 3] == -np.inf  # marked in place
    ints = np.arange(6).reshape(2, 3)  # not a float array: copied whatever overwrite says
    top_n(ints, 2, overwrite=True)
    assert ints.dtype.kind == "i"


@pytest.mark.parametrize("seed", range(4))
def test_ties_by_ascending_index_among_the_selected(seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.integers(-3, 4, size=(5, 200)).astype(np.float32)
    scores[rng.random(scores.shape) < 0.05] = -np.inf
    idx, vals = top_n(scores, 40)
    for r in range(5):
        got = idx[r][idx[r] >= 0].tolist()
        best = sorted(scores[r][scores[r] > -np.inf].tolist(), reverse=True)[:40]
        assert scores[r, got].tolist() == best  # the best scores, best first (which
        # items tied at the cut: the wide-row test below checks the lowest indices)
        assert got == sorted(got, key=lambda i: (-scores[r, i], i))  # ties by index
        assert vals[r][: len(got)].tolist() == best


def _by_score_then_index(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The reference: every row fully sorted by descending score, then index; -inf out."""
    idx = np.full((scores.shape[0], n), -1)
    vals = np.full((scores.shape[0], n), -np.inf)
    for r, row in enumerate(scores):
        order = [i for i in np.lexsort((np.arange(row.size), -row)) if row[i] > -np.inf][:n]
        idx[r, :len(order)], vals[r, :len(order)] = order, row[order]
    return idx, vals


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_wide_rows_through_the_sampled_threshold_match_a_full_sort(dtype: type) -> None:
    """Rows of ≥ SAMPLED_MIN_WIDTH take the sampled threshold; with many ties (rounded
    scores), rows of few eligible items, rows of -inf and rows whose sample misleads
    (the best items outside every sampled column) the result is the full sort's, ties at
    the cut included (the lowest indices)."""
    rng = np.random.default_rng(7)
    width = topn_module.SAMPLED_MIN_WIDTH * 2
    scores = rng.normal(size=(12, width)).astype(dtype)
    scores[1] = np.round(scores[1], 1)  # hundreds of ties at the cut
    scores[2, rng.random(width) < 0.99] = -np.inf  # ~40 eligible: fewer than n
    scores[3] = -np.inf
    scores[4, :] = -1.0
    scores[4, 1::topn_module.SAMPLE_STEP] = 5.0  # the best never sampled: many pass
    scores[5] = 0.5  # all equal
    idx, vals = top_n(scores, 100)
    want_idx, want_vals = _by_score_then_index(scores, 100)
    np.testing.assert_array_equal(idx, want_idx)
    np.testing.assert_array_equal(vals, want_vals)
    sims, _ = similar_items(rng.normal(size=(width, 8)).astype(np.float32), n=30)
    assert (sims >= 0).all() and (sims != np.arange(width)[:, None]).all()
