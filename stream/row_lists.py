"""Model-neighbour lists in binary form, for the worker.

The retrain writes every item's neighbour list twice: as JSON (``i:{item}:similar``, what
the API serves) and, per model version, as model rows and scores in one Redis hash
(``model:{version}:similar_rows``, field = item id). The worker reads the binary form:
decoding 100 JSON pairs cost ~100 µs and coding their ids to model rows as much again,
both per list and per batch (py-spy: a quarter of the batch processor).

Value layout: ``n`` little-endian int32 model rows, then ``n`` int32 scores in millionths.
The JSON form rounds scores to 6 decimals (``dumps_list``: ``np.round(s, 6)``, which is
``rint(s · 1e6) / 1e6``), so dividing the stored integers by 1e6 gives bit for bit the
floats the JSON parses to: the worker's lists do not change. 8 bytes per entry, against
~22 in the JSON.
"""

from __future__ import annotations

import numpy as np

from recommender.blend_many import RowList

_DTYPE = np.dtype("<i4")
_SCALE = 1e6


def encode_rows(rows: np.ndarray, scores: np.ndarray) -> bytes:
    """One list as stored: its model rows and its scores (rounded as the JSON form)."""
    rows = np.asarray(rows)
    micro = np.rint(np.asarray(scores, dtype=np.float64) * _SCALE)
    if rows.shape != micro.shape:
        raise ValueError("rows and scores differ in length")
    return rows.astype(_DTYPE).tobytes() + micro.astype(_DTYPE).tobytes()


def encode_row_block(rows: np.ndarray, scores: np.ndarray) -> list[bytes]:
    """:func:`encode_rows` of every row of two ``(m, n)`` arrays of full lists (no
    padding), converted in one go: the retrain stores 20,000 of them."""
    micro = np.rint(np.asarray(scores, dtype=np.float64) * _SCALE).astype(_DTYPE)
    coded = np.asarray(rows).astype(_DTYPE)
    return [r.tobytes() + s.tobytes() for r, s in zip(coded, micro, strict=True)]


def decode_rows(raw: bytes, depth: int) -> RowList:
    """The first ``depth`` entries of a stored list as a :class:`RowList`."""
    flat = np.frombuffer(raw, dtype=_DTYPE)
    n = flat.size // 2
    k = min(n, max(depth, 0))
    return RowList(flat[:k].astype(np.int64), flat[n:n + k] / _SCALE)


def decode_row_ids(raw: bytes, depth: int) -> list[int]:
    """The model rows of :func:`decode_rows`, as ints, without the scores: the first
    freshness level reads only the neighbours' order (``stream.relister``), and the
    two arrays and the score division were most of its ~8 µs per list."""
    count = min(len(raw) // (2 * _DTYPE.itemsize), max(depth, 0))
    return np.frombuffer(raw, dtype=_DTYPE, count=count).tolist()
