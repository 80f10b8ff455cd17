"""The model version a worker folds users in against, loaded from Redis and hot-swapped."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import orjson
import redis.asyncio as aioredis

from recommender.foldin import gramian
from recommender.idmap import IdMap
from streamrec.redis_keys import RedisKeys


@dataclass(frozen=True)
class LiveModel:
    """Item factors of one published version plus what fold-in needs precomputed."""

    version: str
    item_map: IdMap
    item_factors: np.ndarray
    yty: np.ndarray
    regularization: float
    alpha: float


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
                     regularization: float, alpha: float) -> LiveModel | None:
    """Fetch a published version's item ids and factors; None if it vanished."""
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
    ids = orjson.loads(ids_raw)
    return LiveModel(
        version=version,
        item_map=IdMap(ids),
        item_factors=factors,
        yty=gramian(factors),
        regularization=float(meta.get("regularization", regularization)),
        alpha=float(meta.get("alpha", alpha)),
    )
