"""Fold-in solves the implicit-ALS user step exactly."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recommender.als import train_als
from recommender.foldin import fold_in, gramian, row_from_weights
from recommender.idmap import IdMap
from recommender.topn import recommend_batch


def planted(n_users: int = 200, n_items: int = 80, seed: int = 1) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    rows, cols, vals = [], [], []
    for u in range(n_users):
        group = u % 4
        pool = np.arange(group * 20, group * 20 + 20)
        items = [*rng.choice(pool, size=8, replace=False), rng.integers(0, n_items)]
        for i in items:
            rows.append(u)
            cols.append(int(i))
            vals.append(float(rng.choice([1.0, 3.0, 6.0])))
    return sp.csr_matrix((vals, (rows, cols)), shape=(n_users, n_items), dtype=np.float32)


def dense_solution(
    y: np.ndarray, items: np.ndarray, weights: np.ndarray, reg: float, alpha: float
) -> np.ndarray:
    """Textbook formula with the full diagonal confidence matrix over all items."""
    y = y.astype(np.float64)
    c = np.ones(y.shape[0])
    p = np.zeros(y.shape[0])
    c[items] = 1.0 + alpha * weights
    p[items] = 1.0
    a = y.T @ (c[:, None] * y) + reg * np.eye(y.shape[1])
    return np.linalg.solve(a, y.T @ (c * p))


def test_matches_the_textbook_normal_equations() -> None:
    rng = np.random.default_rng(0)
    y = rng.standard_normal((30, 5)).astype(np.float32)
    rows = [
        (np.array([1, 4, 7]), np.array([1.0, 3.0, 6.0])),
        (np.array([2]), np.array([2.5])),
        (np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]), rng.random(12) + 0.1),
    ]
    got = fold_in(y, rows=rows, regularization=0.1, alpha=2.0)
    assert got.shape == (3, 5) and got.dtype == np.float32
    for j, (items, weights) in enumerate(rows):
        want = dense_solution(y, items, weights, 0.1, 2.0)
        np.testing.assert_allclose(got[j], want, rtol=1e-4, atol=1e-5)
    again = fold_in(y, rows=rows, regularization=0.1, alpha=2.0, yty=gramian(y))
    np.testing.assert_allclose(again, got, rtol=1e-6)


def test_empty_unknown_repeated_and_nonpositive_items() -> None:
    rng = np.random.default_rng(2)
    y = rng.standard_normal((10, 3))
    rows = [
        (np.array([], dtype=np.int64), np.array([])),
        (np.array([-1, 99]), np.array([1.0, 1.0])),  # nothing known -> zero row
        (np.array([2, 2, -1, 5]), np.array([1.0, 2.0, 9.0, -1.0])),  # = item 2 weight 3
        (np.array([2]), np.array([3.0])),
    ]
    got = fold_in(y, rows=rows, regularization=0.05, alpha=2.0)
    assert not got[:2].any()
    np.testing.assert_allclose(got[2], got[3], rtol=1e-6)
    assert fold_in(y, rows=[], regularization=0.05, alpha=2.0).shape == (0, 3)


def test_reproduces_trained_user_factors_and_their_lists() -> None:
    m = planted()
    model = train_als(m, factors=12, iterations=30, regularization=0.05, alpha=2.0)
    rows = [(m[u].indices, m[u].data) for u in range(m.shape[0])]
    folded = fold_in(
        model.item_factors, rows=rows, regularization=model.regularization, alpha=model.alpha
    )
    trained = model.user_factors
    cos = (folded * trained).sum(1) / (
        np.linalg.norm(folded, axis=1) * np.linalg.norm(trained, axis=1)
    )
    assert cos.min() > 0.99

    a, _ = recommend_batch(trained, model.item_factors, n=10, exclude_rows=m)
    b, _ = recommend_batch(folded, model.item_factors, n=10, exclude_rows=m)
    overlap = np.mean([len(set(x) & set(z)) / 10 for x, z in zip(a, b, strict=True)])
    assert overlap > 0.9


def test_batching_does_not_change_results(monkeypatch: pytest.MonkeyPatch) -> None:
    import recommender.foldin as foldin_module

    rng = np.random.default_rng(3)
    y = rng.standard_normal((50, 4))
    rows = [
        (rng.choice(50, size=int(n), replace=False), rng.random(int(n)) + 0.5)
        for n in rng.integers(1, 20, size=25)
    ]
    whole = fold_in(y, rows=rows, regularization=0.05, alpha=2.0)
    monkeypatch.setattr(foldin_module, "_BATCH_VALUES", 1)  # one user per solve
    single = fold_in(y, rows=rows, regularization=0.05, alpha=2.0)
    np.testing.assert_allclose(whole, single, rtol=1e-5, atol=1e-6)


def test_row_from_weights_keeps_known_items() -> None:
    items = IdMap(["a", "b", "c"])
    idx, w = row_from_weights({"c": 2.0, "new": 5.0, "a": 1.0}, item_map=items)
    assert idx.tolist() == [2, 0]
    assert w.tolist() == [2.0, 1.0]


@pytest.mark.parametrize("alpha", [0.5, 2.0, 40.0])
def test_few_item_users_take_the_woodbury_path_to_the_same_solution(alpha: float) -> None:
    # k = 32: users with <= 16 items are solved through the Woodbury identity, longer ones
    # directly; both must give the textbook solution.
    rng = np.random.default_rng(5)
    y = (rng.standard_normal((300, 32)) * 0.3).astype(np.float32)
    rows = [(rng.choice(300, size=w, replace=False), rng.random(w) * 5 + 0.1)
            for w in (1, 2, 3, 5, 8, 16, 17, 40)]
    yty = gramian(y)
    got = fold_in(y, rows=rows, regularization=0.05, alpha=alpha, yty=yty)
    for j, (items, weights) in enumerate(rows):
        want = dense_solution(y, items, weights, 0.05, alpha)
        np.testing.assert_allclose(got[j], want, rtol=1e-4, atol=1e-5)
    # The cached inverse of the same Gramian gives the same factors on a second call.
    np.testing.assert_array_equal(
        fold_in(y, rows=rows, regularization=0.05, alpha=alpha, yty=yty), got)
