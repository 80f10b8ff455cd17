"""Implicit ALS on planted data: confidence semantics, clusters, determinism."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recommender.als import confidence_matrix, train_als
from recommender.topn import recommend_batch


def two_clusters(
    n_users: int = 120, n_items: int = 60, per_user: int = 10, seed: int = 0
) -> sp.csr_matrix:
    """Even users like items 0..n/2-1, odd users the rest, plus one stray interaction."""
    rng = np.random.default_rng(seed)
    half = n_items // 2
    rows, cols, vals = [], [], []
    for u in range(n_users):
        base = 0 if u % 2 == 0 else half
        liked = rng.choice(np.arange(base, base + half), size=per_user, replace=False)
        stray = rng.integers(0, n_items)
        for i in [*liked, stray]:
            rows.append(u)
            cols.append(int(i))
            vals.append(float(rng.choice([1.0, 3.0, 6.0])))
    return sp.csr_matrix((vals, (rows, cols)), shape=(n_users, n_items), dtype=np.float32)


def test_confidence_is_one_plus_alpha_weight_on_positive_cells_only() -> None:
    w = sp.csr_matrix(np.array([[0.0, 2.0, -1.0], [3.0, 0.0, 0.0]], dtype=np.float32))
    conf = confidence_matrix(w, alpha=2.0)
    assert conf.dtype == np.float32
    assert conf.nnz == 2
    assert conf.toarray().tolist() == [[0.0, 5.0, 0.0], [7.0, 0.0, 0.0]]
    assert w.toarray()[0, 2] == -1.0  # input untouched


def test_users_get_their_cluster_items_on_top() -> None:
    m = two_clusters()
    model = train_als(m, factors=4, iterations=15, regularization=0.05, alpha=2.0)
    assert model.user_factors.shape == (120, 4)
    assert model.item_factors.shape == (60, 4)
    assert model.user_factors.dtype == model.item_factors.dtype == np.float32
    assert model.factors == 4 and model.alpha == 2.0 and model.regularization == 0.05

    idx, scores = recommend_batch(model.user_factors, model.item_factors, n=10, exclude_rows=m)
    assert (idx >= 0).all()
    in_cluster = np.where(np.arange(120)[:, None] % 2 == 0, idx < 30, idx >= 30)
    assert in_cluster.mean() > 0.95
    assert np.all(np.diff(scores, axis=1) <= 0)

    # Every user scores its own cluster's items above the other cluster's on average.
    full = model.user_factors @ model.item_factors.T
    even = np.arange(120) % 2 == 0
    own = np.where(even, full[:, :30].mean(1), full[:, 30:].mean(1))
    other = np.where(even, full[:, 30:].mean(1), full[:, :30].mean(1))
    assert (own > other).all()


def test_training_is_deterministic_for_a_seed() -> None:
    m = two_clusters(n_users=40, n_items=20, per_user=5)
    a = train_als(m, factors=4, iterations=5, random_state=3)
    b = train_als(m, factors=4, iterations=5, random_state=3)
    c = train_als(m, factors=4, iterations=5, random_state=4)
    np.testing.assert_array_equal(a.user_factors, b.user_factors)
    np.testing.assert_array_equal(a.item_factors, b.item_factors)
    assert not np.array_equal(a.item_factors, c.item_factors)


def test_empty_matrix_is_rejected() -> None:
    with pytest.raises(ValueError):
        train_als(sp.csr_matrix((3, 4), dtype=np.float32), factors=2)
    with pytest.raises(ValueError):
        train_als(sp.csr_matrix((0, 0), dtype=np.float32), factors=2)
