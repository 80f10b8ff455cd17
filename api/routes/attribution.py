"""Attribution report (admin key): how lists of each origin and context perform."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends
from redis.exceptions import RedisError

from api.auth import Role
from api.deps import ServicesDep, require
from api.errors import RedisUnavailable
from api.routes.common import error_responses
from core.attribution import CONTEXTS, ORIGINS, UNATTRIBUTED, report_row
from core.redis_keys import RedisKeys
from schemas import AttributionReport, AttributionRow

router = APIRouter(
    tags=["operations"],
    dependencies=[Depends(require(Role.ADMIN))],
    responses=error_responses(401, 403, 429, 503),
)


def _rows(names: tuple[str, ...], hashes: list[Any]) -> list[AttributionRow]:
    rows = []
    for name, raw in zip(names, hashes, strict=True):
        counts = {str(k): int(v) for k, v in (raw or {}).items() if str(v).lstrip("-").isdigit()}
        if any(counts.values()):
            rows.append(AttributionRow.model_validate(report_row(name, counts)))
    return rows


async def attribution_report(redis: Any) -> AttributionReport:
    """The report from the ``attrib:*`` counters (one round trip; raises ``RedisError``,
    ``OSError`` or ``TimeoutError`` when Redis does not answer within 2 s). The dashboard
    shows the same report."""
    keys = RedisKeys()
    origins = (*ORIGINS, UNATTRIBUTED)
    contexts = (*CONTEXTS, UNATTRIBUTED)
    pipe = redis.pipeline(transaction=False)
    for origin in origins:
        pipe.hgetall(keys.attribution(origin))
    for context in contexts:
        pipe.hgetall(keys.attribution_context(context))
    async with asyncio.timeout(2.0):
        results = await pipe.execute(raise_on_error=False)
    results = [r if isinstance(r, dict) else {} for r in results]
    return AttributionReport(by_origin=_rows(origins, results[:len(origins)]),
                             by_context=_rows(contexts, results[len(origins):]))


@router.get("/v1/admin/attribution", response_model=AttributionReport)
async def attribution(services: ServicesDep) -> AttributionReport:
    """Impressions, clicks, add-to-carts and purchases that carried a `recommendation_id`,
    with click-through and conversion rates, per list origin and per page context."""
    try:
        return await attribution_report(services.redis)
    except (RedisError, OSError, TimeoutError) as exc:
        raise RedisUnavailable(exc) from exc
