"""The dashboard's data (``GET /v1/admin/dashboard``): one cached aggregate per API process.

Looking at the dashboard must cost the API next to nothing (under 1 % of its serving
capacity): every request is answered with prepared JSON bytes, recomputed at most every
``MAX_AGE_S`` seconds by one task at a time (any number of open dashboards share it), and
nothing at all is computed while nobody looks. The pipeline part is
:class:`core.pipeline_status.PipelineProbe`, the code behind ``streamrec status --json``,
so the numbers are the same; it runs in a worker thread (kafka-python and redis-py are
synchronous) with clients kept between calls. The shop part (popular and trending items
with names and stock, attribution) uses the API's own async Redis connection.

Charts need history: each aggregate adds a sample (events topic end offsets, processed,
lag, dead letters, the trending top) to a ring buffer of the last ``HISTORY_S`` seconds.
Rates are differences between consecutive samples, so they cover the time dashboards were
open on this process (none over gaps longer than ``GAP_S``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from api.errors import ServiceUnavailable
from api.experiment_store import dashboard_reports
from api.ranking import decay_factor
from api.routes.attribution import attribution_report
from core.pipeline_status import PipelineProbe
from core.redis_keys import RedisKeys
from core.settings import Settings

log = logging.getLogger("streamrec.api")

#: An aggregate is reused for this long (seconds); then the next request recomputes it.
MAX_AGE_S = 2.0
#: How often the page asks again (seconds).
REFRESH_S = 5.0
#: A request waits this long for a recompute, then gets the previous aggregate.
WAIT_S = 3.0
#: Samples kept for the charts (seconds).
HISTORY_S = 600.0
#: No rate across samples further apart than this (the dashboard was closed meanwhile).
GAP_S = 30.0
#: Items shown in the popular and trending lists.
TOP_N = 10
#: Popular items checked for stock (the out-of-stock warning).
STOCK_CHECKED = 50
#: Trending items drawn over time.
TRENDING_LINES = 5
_META_FIELDS = ("name", "category", "price", "currency", "in_stock", "deleted")


@dataclass(frozen=True)
class Sample:
    """What the charts need from one aggregate."""

    t: float
    messages_in: int
    processed: int
    lag: int | None  # None: Kafka could not be read (a gap in the chart, not a 0)
    dead_lettered: int
    trending: tuple[tuple[str, float], ...]


class DashboardFeed:
    """The cached, single-flight dashboard aggregate of one API process."""

    def __init__(self, settings: Settings, redis: Redis) -> None:
        self._settings = settings
        self._redis = redis
        self._keys = RedisKeys()
        self._probe: PipelineProbe | None = None
        self._body: bytes | None = None
        self._made_at = -math.inf
        self._task: asyncio.Task[None] | None = None
        self._samples: deque[Sample] = deque()
        self.recomputed = 0  # aggregates computed (for tests and benchmarks)

    async def body(self) -> bytes:
        """The aggregate as JSON bytes: the cached one while fresh, else a new one (or the
        previous one when the new one takes longer than ``WAIT_S``)."""
        if self._body is not None and time.monotonic() - self._made_at < MAX_AGE_S:
            return self._body
        task = self._task
        if task is None:
            task = self._task = asyncio.create_task(self._refresh(), name="dashboard")
        try:
            async with asyncio.timeout(WAIT_S):
                await asyncio.shield(task)
        except TimeoutError:
            pass
        if self._body is None:
            raise ServiceUnavailable("the dashboard's data is still being gathered",
                                     retry_after_s=2)
        return self._body

    async def close(self) -> None:
        """Let a running recompute finish (bounded), then close the probe's clients."""
        task = self._task
        if task is not None:
            await asyncio.wait([task], timeout=WAIT_S)
        if self._probe is not None:
            await asyncio.to_thread(self._probe.close)
            self._probe = None

    async def _refresh(self) -> None:
        try:
            if self._probe is None:
                self._probe = PipelineProbe(self._settings, self._keys)
            pipeline = await asyncio.to_thread(self._probe.collect)
            shop = await self._shop()
            experiments = await self._experiments(shop["errors"])
            self._body = orjson.dumps(self._assemble(pipeline, shop, experiments))
            self._made_at = time.monotonic()
            self.recomputed += 1
        except Exception:  # noqa: BLE001 - the previous aggregate stays; logged
            log.exception("dashboard data not gathered")
        finally:
            self._task = None

    # -- assembling ---------------------------------------------------------------------
    def _assemble(self, pipeline: dict[str, Any], shop: dict[str, Any],
                  experiments: list[dict[str, Any]] | None) -> dict[str, Any]:
        events_topic = pipeline["topics"].get(self._settings.topic_events) or {}
        sample = Sample(t=pipeline["generated_at"], messages_in=int(events_topic.get("total", 0)),
                        processed=pipeline["processed"], lag=pipeline["lag"],
                        dead_lettered=pipeline["dead_lettered"],
                        trending=tuple((i["item_id"], i["score"]) for i in shop["trending"]))
        self._samples.append(sample)
        while self._samples and self._samples[0].t < sample.t - HISTORY_S:
            self._samples.popleft()
        series = series_columns(list(self._samples))
        return {
            "generated_at": pipeline["generated_at"],
            "refresh_s": REFRESH_S,
            "pipeline": pipeline,
            # events_per_s: the workers' own rate, the number `streamrec status --json`
            # shows (the chart's series are differences between this process's samples).
            "rates": {"messages_in_per_s": series["messages_in_per_s"][-1],
                      "events_per_s": pipeline.get("events_per_s")},
            "series": series,
            "shop": shop,
            "experiments": experiments,
        }

    async def _experiments(self, errors: dict[str, str]) -> list[dict[str, Any]] | None:
        """The report of every experiment (lift, interval, SRM; running, then stopped), as
        ``GET /v1/admin/experiments/{id}/report`` gives it; None when Redis cannot say."""
        try:
            async with asyncio.timeout(2.0):
                return await dashboard_reports(self._redis, self._keys)
        except (RedisError, OSError, TimeoutError) as exc:
            errors["experiments"] = f"{type(exc).__name__}: {exc}"
            return None

    async def _shop(self) -> dict[str, Any]:
        """Popular and trending items with names and stock, popular items out of stock,
        and the attribution report; a part Redis cannot give is null, with the reason."""
        out: dict[str, Any] = {"popular": [], "trending": [], "popular_out_of_stock": [],
                               "attribution": None, "errors": {}}
        try:
            async with asyncio.timeout(2.0):
                await self._lists(out)
        except (RedisError, OSError, TimeoutError) as exc:
            out["errors"]["lists"] = f"{type(exc).__name__}: {exc}"
        try:
            out["attribution"] = (await attribution_report(self._redis)).model_dump()
        except (RedisError, OSError, TimeoutError) as exc:
            out["errors"]["attribution"] = f"{type(exc).__name__}: {exc}"
        return out

    async def _lists(self, out: dict[str, Any]) -> None:
        k = self._keys
        pipe = self._redis.pipeline(transaction=False)
        pipe.zrevrange(k.popular, 0, STOCK_CHECKED - 1, withscores=True)
        pipe.zrevrange(k.trending, 0, TOP_N - 1, withscores=True)
        pipe.get(k.trending_epoch)
        popular, trending, t0 = await pipe.execute()
        ids = list(dict.fromkeys([i for i, _ in popular] + [i for i, _ in trending]))
        pipe = self._redis.pipeline(transaction=False)
        for item_id in ids:
            pipe.hmget(k.item_meta(item_id), _META_FIELDS)
        metas = dict(zip(ids, await pipe.execute(), strict=True))
        scale = decay_factor(time.time(), t0, self._settings.trending_half_life_s)
        rows = [item_row(i, s, metas[i]) for i, s in popular]
        out["popular"] = rows[:TOP_N]
        out["popular_out_of_stock"] = [r for r in rows if r["in_stock"] is False
                                       and not r["deleted"]]
        out["trending"] = [item_row(i, s * scale, metas[i]) for i, s in trending]


def item_row(item_id: str, score: float, meta: list[Any]) -> dict[str, Any]:
    """One shop list entry: the item, its score and catalog fields (``None`` when the item
    was never in the catalog)."""
    name, category, price, currency, in_stock, deleted = meta
    known = any(v is not None for v in meta)
    try:
        price_value = float(price) if price is not None else None
    except ValueError:
        price_value = None
    return {"item_id": item_id, "score": round(float(score), 6), "name": name,
            "category": category, "price": price_value, "currency": currency,
            "in_stock": (in_stock != "0") if known else None, "deleted": deleted == "1"}


def series_columns(samples: list[Sample]) -> dict[str, Any]:
    """The samples as chart columns; rates between consecutive samples (``None`` for the
    first, across gaps and when a counter went down, e.g. after a rebuild)."""
    msg_rate: list[float | None] = []
    ev_rate: list[float | None] = []
    for before, now in zip([None, *samples], samples, strict=False):
        dt = now.t - before.t if before is not None else 0.0
        if before is None or dt <= 0 or dt > GAP_S:
            msg_rate.append(None)
            ev_rate.append(None)
            continue
        msg_rate.append(_rate(now.messages_in - before.messages_in, dt))
        ev_rate.append(_rate(now.processed - before.processed, dt))
    latest = [item for item, _ in samples[-1].trending[:TRENDING_LINES]] if samples else []
    return {
        "t": [s.t for s in samples],
        "messages_in_per_s": msg_rate,
        "events_per_s": ev_rate,
        "lag": [s.lag for s in samples],
        "dead_lettered": [s.dead_lettered for s in samples],
        "trending": {"items": latest,
                     "scores": [[dict(s.trending).get(item) for s in samples]
                                for item in latest]},
    }


def _rate(delta: int, seconds: float) -> float | None:
    return round(delta / seconds, 2) if delta >= 0 else None
