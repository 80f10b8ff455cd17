"""Top-N selection over score matrices: personal lists and similar-item lists.

Full sorts of every user's scores over every item are wasted work when only ``n`` are
kept, so selection finds each row's ``n``-th score (from a sample of the row's columns
when it is wide, :func:`_top_sets`) and sorts only the scores at or above it.
Score matrices are built a block of rows at a time so memory stays bounded however many
users or items there are.

Results always have exactly ``n`` columns: when fewer items qualify, the tail is padded
with index ``-1`` and score ``-inf`` (:meth:`recommender.idmap.IdMap.ids_of` skips the
padding).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

#: Most score values materialised at once by the chunked functions (float32: 128 MB).
MAX_BLOCK_VALUES = 1 << 25

#: Items whose similar lists are scored in one block: blocks of 256 × 20,000 scores took
#: 11 % less time and 13 % less CPU than 2,048-row blocks for the 1M-interaction retrain's
#: 20,000 items (five alternating rounds, 2 threads, 2026-12-03); the product and the
#: partition that reads it back stay closer to the cache.
SIMILAR_CHUNK = 256

#: Rows at least this wide find their top items through a sampled threshold
#: (:func:`_top_sets`); narrower ones are partitioned whole. For n = 100 the sample
#: took ~25 µs per row of 2,000 against ~60 exactly, 25–33 against 32–43 at 1,000.
SAMPLED_MIN_WIDTH = 512
#: Every how many columns the sample takes one.
SAMPLE_STEP = 8
#: Most values per wanted item that may pass the sampled threshold before a row is
#: partitioned whole instead.
SAMPLE_SPILL = 8

IndexArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.floating]


def _top_sets(scores: FloatArray, take: int) -> IndexArray:
    """Per row of ``scores`` (wider than ``take``), the indices of its ``take`` largest
    values, best first, ties by ascending index (so of values tied at the cut, the
    lowest indices), padded with -1 where fewer are above ``-inf``.

    The values at or above a row's threshold are sorted by value, then index, and the
    first ``take`` kept. Wide rows read the threshold off a sample of every
    :data:`SAMPLE_STEP`-th column (about twice ``take`` values pass it): an argpartition
    of every whole row was 3/4 of the similar lists' time (1.1 s of products against
    3.6 s of partitions for 18,729 items at 128 factors, one thread). Other rows, and
    those where the sample misleads (fewer than ``take`` or over :data:`SAMPLE_SPILL` ×
    ``take`` values pass, or ``-inf`` does), take their ``take``-th value exactly."""
    m, width = scores.shape
    sample = scores[:, ::SAMPLE_STEP]
    rank = 2 * take // SAMPLE_STEP + 8  # the sample's rank-th largest value
    if width >= SAMPLED_MIN_WIDTH and rank < sample.shape[1]:
        at = sample.shape[1] - rank
        threshold = np.partition(sample, at, axis=1)[:, at]
        passes = scores >= threshold[:, None]
        counts = np.count_nonzero(passes, axis=1)
        exact = (counts < take) | (counts > SAMPLE_SPILL * take) | (threshold == -np.inf)
        if exact.any():
            sub = scores[exact]
            threshold[exact] = np.partition(sub, width - take, axis=1)[:, width - take]
            passes[exact] = sub >= threshold[exact][:, None]
    else:
        threshold = np.partition(scores, width - take, axis=1)[:, width - take]
        passes = scores >= threshold[:, None]
    # a row of fewer than ``take`` eligible values: those (the rest is padding)
    short = threshold == -np.inf
    passes[short] = scores[short] > -np.inf
    return _best_passing(scores, passes, take)


def _best_passing(scores: FloatArray, passes: npt.NDArray[np.bool_], take: int) -> IndexArray:
    """Per row, the indices of the ``take`` largest ``scores`` where ``passes`` (rows
    with fewer are padded with -1), ties by ascending index."""
    m, width = scores.shape
    rows, cols = np.divmod(np.flatnonzero(passes), width)  # row-major: indices ascend
    per_row = np.bincount(rows, minlength=m)
    within = np.arange(rows.size) - (np.cumsum(per_row) - per_row)[rows]
    # the passing values packed left, a row each; the stable sort keeps index order
    packed = np.full((m, max(int(per_row.max(initial=0)), take)), -np.inf,
                     dtype=scores.dtype)
    at_col = np.full(packed.shape, -1, dtype=np.int64)
    packed[rows, within] = scores[rows, cols]
    at_col[rows, within] = cols
    best = np.argsort(-packed, axis=1, kind="stable")[:, :take]
    return at_col[np.arange(m)[:, None], best]


def _select(scores: FloatArray, n: int) -> tuple[IndexArray, FloatArray]:
    """Top ``n`` per row of a 2-D float array in which ``-inf`` means "not eligible"."""
    m, n_items = scores.shape
    idx_out = np.full((m, max(n, 0)), -1, dtype=np.int64)
    val_out = np.full((m, max(n, 0)), -np.inf, dtype=scores.dtype)
    take = min(n, n_items)
    if take <= 0 or m == 0:
        return idx_out, val_out
    # plain fancy indexing: take_along_axis's checks cost more than the gathers
    # themselves for a few rows
    rows = np.arange(m)[:, None]
    if take < n_items:
        cand = _top_sets(scores, take)  # best first, ties by index, padded with -1
        vals = np.where(cand >= 0, scores[rows, cand], -np.inf)
    else:
        # highest score first; equal scores by ascending index (a stable sort of the
        # rows, which are in index order), so output is deterministic
        order = np.argsort(-scores, axis=1, kind="stable")
        cand, vals = order, scores[rows, order]
    eligible = vals > -np.inf
    idx_out[:, :take] = np.where(eligible, cand, -1)
    val_out[:, :take] = np.where(eligible, vals, -np.inf)
    return idx_out, val_out


def _exclusion_rows(
    exclude: Sequence[npt.ArrayLike] | npt.NDArray[np.integer], *, one_d: bool, m: int
) -> list[npt.NDArray[np.int64]]:
    if one_d:
        flat = (
            exclude.ndim <= 1
            if isinstance(exclude, np.ndarray)
            else all(np.ndim(e) == 0 for e in exclude)
        )
        if flat:  # a plain list of indices for the single row
            return [np.asarray(exclude, dtype=np.int64).ravel()]
    rows = [np.asarray(e, dtype=np.int64).ravel() for e in exclude]
    if len(rows) != m:
        raise ValueError(f"exclude has {len(rows)} rows, scores have {m}")
    return rows


def top_n(
    scores: npt.ArrayLike,
    n: int,
    *,
    exclude: Sequence[npt.ArrayLike] | npt.NDArray[np.integer] | None = None,
    overwrite: bool = False,
) -> tuple[IndexArray, FloatArray]:
    """Return the ``n`` best indices and their scores, best first, per row.

    Parameters
    ----------
    scores
        ``(m, n_items)`` or ``(n_items,)`` scores. ``NaN`` and ``-inf`` are never returned.
    n
        Items wanted per row.
    exclude
        Indices never to return: one array per row (negative values are ignored, so
        padded arrays work). For 1-D ``scores`` a flat array of indices is accepted too.
    overwrite
        ``scores`` is a 2-D float array the caller no longer needs: it is marked in
        place instead of copied (the worker's score matrices are fresh products).

    Returns
    -------
    tuple of numpy.ndarray
        ``(indices, scores)``, each ``(m, n)`` (or ``(n,)`` for 1-D input), sorted by
        descending score with ties by ascending index, padded with ``-1`` / ``-inf``.
    """
    arr = np.asarray(scores)
    one_d = arr.ndim == 1
    dtype = np.result_type(arr.dtype, np.float32)
    in_place = overwrite and arr.ndim == 2 and arr.dtype == dtype
    work = arr if in_place else np.array(np.atleast_2d(arr), dtype=dtype, copy=True)
    if work.ndim != 2:
        raise ValueError(f"scores must be 1-D or 2-D, got shape {arr.shape}")
    work[np.isnan(work)] = -np.inf
    if exclude is not None:
        m, n_items = work.shape
        for r, cols in enumerate(_exclusion_rows(exclude, one_d=one_d, m=m)):
            cols = cols[(cols >= 0) & (cols < n_items)]
            work[r, cols] = -np.inf
    idx, vals = _select(work, n)
    if one_d:
        return idx[0], vals[0]
    return idx, vals


def _rows_per_block(chunk: int, n_items: int, threads: int = 1) -> int:
    # Each thread holds a block at a time: together they stay within MAX_BLOCK_VALUES.
    return max(1, min(chunk, MAX_BLOCK_VALUES // max(n_items, 1) // max(threads, 1)))


def _blocks(m: int, step: int, work: Callable[[int, int], None], threads: int) -> None:
    """Run ``work(start, stop)`` over ``[0, m)`` in blocks of ``step`` rows, on
    ``threads`` threads (matrix products and partitions release the GIL; blocks write
    disjoint rows of the outputs)."""
    spans = [(start, min(start + step, m)) for start in range(0, m, step)]
    if threads <= 1 or len(spans) <= 1:
        for start, stop in spans:
            work(start, stop)
        return
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for future in [pool.submit(work, start, stop) for start, stop in spans]:
            future.result()


def recommend_batch(
    user_factors: npt.NDArray[np.floating],
    item_factors: npt.NDArray[np.floating],
    *,
    n: int,
    exclude_rows: sp.spmatrix | sp.sparray | None = None,
    chunk: int = 2048,
    threads: int = 1,
) -> tuple[IndexArray, npt.NDArray[np.float32]]:
    """Score every item for every user (dot product) and keep each user's top ``n``.

    Parameters
    ----------
    user_factors
        ``(m, k)`` user factors.
    item_factors
        ``(n_items, k)`` item factors.
    n
        List length.
    exclude_rows
        Optional sparse ``(m, ≥n_items)`` matrix; the stored cells of row ``u`` (any value,
        e.g. the training matrix = items already interacted with) are never returned for
        user ``u``. Columns beyond ``n_items`` are ignored.
    chunk
        Most users scored at once; further capped so a block holds at most
        :data:`MAX_BLOCK_VALUES` scores.
    threads
        Blocks scored at the same time (the results do not depend on it).

    Returns
    -------
    tuple of numpy.ndarray
        ``(indices, scores)``, both ``(m, n)``, best first, padded with ``-1`` / ``-inf``.
        A zero user row scores 0 everywhere and therefore gets arbitrary (lowest-index)
        items: skip such users rather than store their lists.
    """
    users = np.asarray(user_factors, dtype=np.float32)
    items = np.asarray(item_factors, dtype=np.float32)
    m, n_items = users.shape[0], items.shape[0]
    excl = sp.csr_matrix(exclude_rows) if exclude_rows is not None else None
    if excl is not None and excl.shape[0] != m:
        raise ValueError(f"exclude_rows has {excl.shape[0]} rows, user_factors has {m}")
    idx_out = np.full((m, max(n, 0)), -1, dtype=np.int64)
    val_out = np.full((m, max(n, 0)), -np.inf, dtype=np.float32)
    items_t = np.ascontiguousarray(items.T)

    def score(start: int, stop: int) -> None:
        block = users[start:stop] @ items_t
        block[np.isnan(block)] = -np.inf
        if excl is not None:
            sub = excl[start:stop]
            r = np.repeat(np.arange(stop - start), np.diff(sub.indptr))
            c = sub.indices
            ok = c < n_items
            block[r[ok], c[ok]] = -np.inf
        idx_out[start:stop], val_out[start:stop] = _select(block, n)

    _blocks(m, _rows_per_block(chunk, n_items, threads), score, threads)
    return idx_out, val_out


def similar_items(
    item_factors: npt.NDArray[np.floating], *, n: int, chunk: int = SIMILAR_CHUNK,
    threads: int = 1
) -> tuple[IndexArray, npt.NDArray[np.float32]]:
    """For every item, the ``n`` items with the most similar factors (cosine).

    Cosine rather than dot product, so that popular items (long factor vectors) do not
    become "similar" to everything. An item is never its own neighbour, and items with an
    all-zero factor row have no direction: they get no neighbours and are nobody's.

    Parameters
    ----------
    item_factors
        ``(n_items, k)`` item factors.
    n
        Neighbours per item.
    chunk
        Most items scored at once (also capped by :data:`MAX_BLOCK_VALUES`; see
        :data:`SIMILAR_CHUNK`).
    threads
        Blocks scored at the same time (the results do not depend on it).

    Returns
    -------
    tuple of numpy.ndarray
        ``(indices, similarities)``, both ``(n_items, n)``, best first, padded with
        ``-1`` / ``-inf``.
    """
    items = np.asarray(item_factors, dtype=np.float32)
    n_items = items.shape[0]
    norms = np.linalg.norm(items, axis=1)
    valid = norms > 0.0
    unit = np.zeros_like(items)
    unit[valid] = items[valid] / norms[valid, None]
    unit_t = np.ascontiguousarray(unit.T)
    idx_out = np.full((n_items, max(n, 0)), -1, dtype=np.int64)
    val_out = np.full((n_items, max(n, 0)), -np.inf, dtype=np.float32)

    def score(start: int, stop: int) -> None:
        block = unit[start:stop] @ unit_t
        block[:, ~valid] = -np.inf
        block[~valid[start:stop], :] = -np.inf
        rows = np.arange(stop - start)
        block[rows, start + rows] = -np.inf
        idx_out[start:stop], val_out[start:stop] = _select(block, n)

    _blocks(n_items, _rows_per_block(chunk, n_items, threads), score, threads)
    return idx_out, val_out
