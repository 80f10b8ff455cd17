"""Fold-in: a user's factors from fixed item factors, without retraining.

Between retrains the worker knows the item factors of the live model and each entity's
recent history. Solving the user half of one ALS sweep for that entity gives exactly the
factors ALS would have given it, so personal lists follow every new event in real time.

For a user with items ``I``, weights ``w`` and confidences ``c = 1 + alpha · w`` (every
other item has ``c = 1, p = 0``), implicit ALS minimises
``Σ_all c·(p − xᵀy)² + λ‖x‖²`` whose solution is

    x = (YᵀY + Y_Iᵀ diag(c − 1) Y_I + λI)⁻¹ Y_Iᵀ c

``YᵀY`` is shared by all users (:func:`gramian`); the rest involves only the user's own
items, so a fold-in costs ``O(|I|·k² + k³)``.

Most streaming users have far fewer items than factors (a Taobao batch: a handful each,
``k = 128``), and for them the ``k × k`` solve dominates. With ``B = YᵀY + λI`` (shared,
inverted once per model and cached) and ``V = Y_Iᵀ diag(c − 1)^½``, the Woodbury identity

    (B + V Vᵀ)⁻¹ = B⁻¹ − B⁻¹ V (I + Vᵀ B⁻¹ V)⁻¹ Vᵀ B⁻¹

turns it into an ``|I| × |I|`` solve of a well-conditioned matrix (eigenvalues ≥ 1):
``O(|I|·k² + |I|²·k + |I|³)``. It is the same solution, not an approximation (an
iterative solver such as a few conjugate-gradient steps would be); users with more than
``k / 2`` items take the direct ``k × k`` solve.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from recommender.idmap import IdMap

#: Upper bound on ``users × padded items × factors`` values stacked in one batched solve
#: (float64): about 32 MB.
_BATCH_VALUES = 1 << 22

#: ``(B⁻¹ of a Gramian + λI)`` per ``(id(yty), λ)``, while that Gramian object lives.
_INVERSES: dict[tuple[int, float], tuple[weakref.ref[np.ndarray], npt.NDArray[np.float64]]] = {}

Row = tuple[npt.NDArray[np.integer], npt.NDArray[np.floating]]


def gramian(item_factors: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
    """Return ``YᵀY`` of the item factors, the part of every fold-in that is shared.

    Compute it once per model version and pass it to :func:`fold_in` as ``yty``.

    Parameters
    ----------
    item_factors
        ``(n_items, k)`` item factors.

    Returns
    -------
    numpy.ndarray
        ``(k, k)`` symmetric ``float64`` matrix.
    """
    y = np.asarray(item_factors, dtype=np.float64)
    return y.T @ y


def row_from_weights(
    item_weights: Mapping[str, float], *, item_map: IdMap
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Turn an entity's ``item -> weight`` mapping into a fold-in row for one model.

    Items the model does not know (new since the retrain) are dropped: they have no
    factors to learn from.

    Parameters
    ----------
    item_weights
        For example :meth:`recommender.history.History.item_weights`.
    item_map
        The model's item ids in factor-row order.

    Returns
    -------
    tuple of numpy.ndarray
        ``(item indices, weights)`` of the known items.
    """
    items = list(item_weights)
    idx = item_map.indices(items)
    weights = np.fromiter((item_weights[i] for i in items), dtype=np.float64, count=len(items))
    known = idx >= 0
    return idx[known], weights[known]


def _clean_row(row: Row, n_items: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    idx = np.asarray(row[0], dtype=np.int64).ravel()
    w = np.asarray(row[1], dtype=np.float64).ravel()
    if idx.shape != w.shape:
        raise ValueError("item indices and weights must have the same length")
    valid = (idx >= 0) & (idx < n_items)
    idx, w = idx[valid], w[valid]
    ordered = np.sort(idx)
    if idx.size > 1 and (ordered[1:] == ordered[:-1]).any():
        uniq, inverse = np.unique(idx, return_inverse=True)
        # Repeated items add up, like repeated events in the interaction matrix.
        idx, w = uniq, np.bincount(inverse, weights=w, minlength=uniq.size).astype(np.float64)
    positive = w > 0.0
    return idx[positive], w[positive]


def fold_in(
    item_factors: npt.NDArray[np.floating],
    *,
    rows: Sequence[Row],
    regularization: float,
    alpha: float,
    yty: npt.NDArray[np.floating] | None = None,
) -> npt.NDArray[np.float32]:
    """Compute user factors from fixed item factors, exactly as one ALS user step would.

    Users are stacked into batches of similar length and solved with one batched
    ``numpy.linalg.solve`` per batch, which is far faster than a Python loop of small
    solves when a stream batch touches hundreds of users.

    Parameters
    ----------
    item_factors
        ``(n_items, k)`` factors of the live model.
    rows
        Per user ``(item indices, weights)``. Indices outside ``0 .. n_items-1`` (such as
        ``-1`` from :meth:`IdMap.indices`) and non-positive total weights are ignored;
        repeated indices add up.
    regularization
        ``λ`` the model was trained with.
    alpha
        Confidence slope the model was trained with (``c = 1 + alpha · w``).
    yty
        Precomputed :func:`gramian` of ``item_factors``; computed here when omitted.

    Returns
    -------
    numpy.ndarray
        ``float32`` array ``(len(rows), k)``; a user without any usable item gets a zero
        row (score 0 for every item, so callers fall back to non-personal lists).
    """
    y = np.asarray(item_factors, dtype=np.float64)
    n_items, k = y.shape
    out = np.zeros((len(rows), k), dtype=np.float32)
    base: npt.NDArray[np.float64] | None = None  # YᵀY + λI, only when it is needed:

    def with_ridge() -> npt.NDArray[np.float64]:  # the usual call reuses a cached inverse
        nonlocal base
        if base is None:
            gram = gramian(y) if yty is None else np.asarray(yty, dtype=np.float64)
            base = gram + regularization * np.eye(k)
        return base

    inverse: npt.NDArray[np.float64] | None = None
    cleaned = [_clean_row(r, n_items) for r in rows]
    lengths = np.fromiter((c[0].size for c in cleaned), dtype=np.int64, count=len(cleaned))
    users = np.flatnonzero(lengths > 0)
    if users.size == 0:
        return out
    users = users[np.argsort(lengths[users], kind="stable")]

    start = 0
    while start < users.size:
        # Grow the batch while the padded stack stays under the budget; users are sorted
        # by length, so the last one sets the padding.
        stop = start + 1
        while stop < users.size and (stop + 1 - start) * lengths[users[stop]] * k <= _BATCH_VALUES:
            stop += 1
        batch = users[start:stop]
        users_rows = [cleaned[u] for u in batch]
        if 2 * lengths[users[stop - 1]] <= k:
            if inverse is None:
                inverse = _base_inverse(with_ridge, yty, regularization)
            out[batch] = _solve_batch_woodbury(y, users_rows, alpha=alpha, inverse=inverse)
        else:
            out[batch] = _solve_batch(y, with_ridge(), users_rows, alpha=alpha)
        start = stop
    return out


def _base_inverse(base: Callable[[], npt.NDArray[np.float64]],
                  yty: npt.NDArray[np.floating] | None,
                  regularization: float) -> npt.NDArray[np.float64]:
    """``base()⁻¹``, cached per Gramian object (one inverse per model version, not per
    call; ``base`` is not even built on a cache hit)."""
    key = (id(yty), float(regularization))
    cached = _INVERSES.get(key) if yty is not None else None
    if cached is not None and cached[0]() is yty:
        return cached[1]
    inverse = np.asarray(np.linalg.inv(base()), dtype=np.float64)
    if yty is not None:
        if len(_INVERSES) > 8:
            _INVERSES.clear()
        _INVERSES[key] = (weakref.ref(yty), inverse)
    return inverse


def _padded(rows: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]],
            alpha: float) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Item indices and confidences ``c`` of the users, padded to one width with ``c = 0``
    (padding contributes nothing)."""
    m = len(rows)
    width = max(r[0].size for r in rows)
    idx = np.zeros((m, width), dtype=np.int64)
    conf = np.zeros((m, width), dtype=np.float64)
    for j, (items, weights) in enumerate(rows):
        idx[j, : items.size] = items
        conf[j, : items.size] = 1.0 + alpha * weights
    return idx, conf


def _solve_batch_woodbury(
    y: npt.NDArray[np.float64],
    rows: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]],
    *,
    alpha: float,
    inverse: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """The users' exact solutions through the Woodbury identity (module docstring)."""
    idx, conf = _padded(rows, alpha)
    yu = y[idx]  # (m, width, k)
    # rows of Y_I B⁻¹, each distinct item once (not once per user and padding slot)
    used, where = np.unique(idx, return_inverse=True)
    zu = (y[used] @ inverse)[where.reshape(idx.shape)]
    s = np.sqrt(np.where(conf > 0.0, conf - 1.0, 0.0))  # diag(c − 1)^½, 0 on padding
    x0 = np.einsum("mw,mwk->mk", conf, zu)  # B⁻¹ Y_Iᵀ c
    gram = np.matmul(yu, zu.transpose(0, 2, 1))  # Y_I B⁻¹ Y_Iᵀ
    small = s[:, :, None] * gram * s[:, None, :]
    small += np.eye(idx.shape[1])[None, :, :]
    rhs = s * np.einsum("mwk,mk->mw", yu, x0)  # Vᵀ x0
    t = np.linalg.solve(small, rhs[:, :, None])[:, :, 0]
    return x0 - np.einsum("mw,mwk->mk", s * t, zu)


def _solve_batch(
    y: npt.NDArray[np.float64],
    base: npt.NDArray[np.float64],
    rows: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]],
    *,
    alpha: float,
) -> npt.NDArray[np.float64]:
    m = len(rows)
    idx, conf = _padded(rows, alpha)
    yu = y[idx]  # (m, width, k)
    # (c − 1) for real entries; padded slots have c = 0 and must add nothing.
    extra = np.where(conf > 0.0, conf - 1.0, 0.0)
    a = base[None, :, :] + np.matmul((yu * extra[:, :, None]).transpose(0, 2, 1), yu)
    b = np.matmul(conf[:, None, :], yu)[:, 0, :]
    try:
        return np.linalg.solve(a, b[:, :, None])[:, :, 0]
    except np.linalg.LinAlgError:
        # Only possible with λ = 0 and too few items to span the factor space.
        return np.stack([np.linalg.lstsq(a[j], b[j], rcond=None)[0] for j in range(m)])
