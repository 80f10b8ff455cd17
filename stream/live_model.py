"""The model version a worker folds users in against, loaded from Redis and hot-swapped.

The loader at the worker's edge of :class:`recommender.model.FoldInModel`: the retrain
(``stream/retrain.py``) publishes a version's item ids, factors and ALS parameters;
:func:`load_model` turns them back into the model type fold-in uses.
"""

from __future__ import annotations

import io

import numpy as np
import orjson
import redis.asyncio as aioredis

from core.redis_keys import RedisKeys
from recommender.idmap import IdMap
from recommender.model import FoldInModel, candidate_rows


def factors_to_bytes(matrix: np.ndarray) -> bytes:
    """``numpy.save`` bytes (no pickle) of a factor matrix."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(matrix, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


def factors_from_bytes(raw: bytes) -> np.ndarray:
    """Inverse of :func:`factors_to_bytes`."""
    return np.load(io.BytesIO(raw), allow_pickle=False)


async def current_version(client: aioredis.Redis, keys: RedisKeys) -> str | None:
    """The live version pointer, or None before the first training."""
    raw = await client.get(keys.model_current)
    return raw.decode() if isinstance(raw, bytes) else raw


async def load_model(client: aioredis.Redis, keys: RedisKeys, version: str, *,
                     regularization: float, alpha: float,
                     candidate_limit: int = 0) -> FoldInModel | None:
    """Fetch a published version's item ids and factors; None if it vanished.

    ``regularization`` and ``alpha`` are used only when the version's metadata lacks
    them; ``candidate_limit`` is ``Settings.foldin_candidates``
    (:func:`recommender.model.candidate_rows`)."""
    pipe = client.pipeline(transaction=False)
    pipe.get(keys.model_item_ids(version))
    pipe.get(keys.model_item_factors(version))
    pipe.hgetall(keys.model_meta(version))
    ids_raw, factors_raw, meta = await pipe.execute()
    if ids_raw is None or factors_raw is None:
        return None
    meta = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes)
            else v) for k, v in (meta or {}).items()}
    factors = factors_from_bytes(factors_raw)
    return FoldInModel.build(
        version, IdMap(orjson.loads(ids_raw)), factors,
        regularization=float(meta.get("regularization", regularization)),
        alpha=float(meta.get("alpha", alpha)),
        pool=candidate_rows(factors, candidate_limit),
    )
