"""The model version a worker folds users in against, loaded from Redis and hot-swapped."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import orjson
import redis.asyncio as aioredis

from core.redis_keys import RedisKeys
from recommender.foldin import gramian
from recommender.idmap import IdMap


@dataclass(frozen=True)
class LiveModel:
    """Item factors of one published version plus what fold-in needs precomputed."""

    version: str
    item_map: IdMap
    item_factors: np.ndarray
    yty: np.ndarray
    regularization: float
    alpha: float
    #: Row indexes of the items the streaming refresh ranks (all items when None).
    candidates: np.ndarray | None = None

    def pool(self) -> tuple[np.ndarray | None, np.ndarray]:
        """``(candidate rows or None, their factors)``: what the stream ranks."""
        if self.candidates is None:
            return None, self.item_factors
        cached = self.__dict__.get("_pool_factors")
        if cached is None:
            cached = np.ascontiguousarray(self.item_factors[self.candidates])
            object.__setattr__(self, "_pool_factors", cached)
        return self.candidates, cached


def candidate_rows(item_factors: np.ndarray, limit: int) -> np.ndarray | None:
    """The ``limit`` items with the largest factor norms, or None for "all items".

    Scoring a refolded user against every item costs ``n_items`` dot products plus an
    argpartition over them; on the Taobao window (85k items) that was 60 % of the
    worker's time and capped it at ~400 events/s. ALS items with large norms are the
    ones that reach top lists (norm tracks popularity), so the stream ranks only those;
    the full retrain still ranks every item for every user. Derived from the factors
    alone, so every worker of a version picks the same pool (same lists whichever
    worker owns a user).
    """
    n = item_factors.shape[0]
    if limit <= 0 or limit >= n:
        return None
    norms = np.einsum("ij,ij->i", item_factors, item_factors)
    rows = np.argpartition(norms, n - limit)[n - limit:]
    return np.sort(rows).astype(np.int64)


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
                     candidate_limit: int = 0) -> LiveModel | None:
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
        candidates=candidate_rows(factors, candidate_limit),
    )
