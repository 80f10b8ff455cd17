"""Operations: liveness, readiness and Prometheus metrics (no key needed)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST
from redis.exceptions import RedisError

from api.deps import Services, ServicesDep
from core import __version__
from core.redis_client import memory_info_async
from schemas import ErrorBody, ErrorInfo, HealthStatus, ReadyStatus, ServiceIndex

router = APIRouter(tags=["operations"])

# Where a person who opens the API's bare address should go next; every path is public
# (the dashboard asks for its key itself, the SDK script needs none).
_LINKS = {
    "docs": "/docs",
    "openapi": "/openapi.json",
    "dashboard": "/dashboard",
    "sdk": "/sdk/streamrec.js",
    "health": "/healthz",
    "ready": "/readyz",
    "metrics": "/metrics",
}


@router.get("/", response_model=ServiceIndex)
async def index() -> ServiceIndex:
    """Name, version and the paths of the docs, dashboard, SDK and probes: the answer to
    someone opening the API's address in a browser (no key needed, nothing private)."""
    return ServiceIndex(version=__version__, links=dict(_LINKS))


# HEAD too: load balancers' health checks often send it (HAProxy's ``option httpchk
# HEAD /healthz``); the answer is the GET's without its body. One route per method: the
# OpenAPI document then has unique operation ids (one route of two methods gave both the
# same id, which OpenAPI forbids).
@router.get("/healthz", response_model=HealthStatus)
@router.head("/healthz", response_model=HealthStatus, operation_id="healthz_head")
async def healthz() -> HealthStatus:
    """The process is up."""
    return HealthStatus()


_READY: dict[str, Any] = {
    "response_model": ReadyStatus,
    "responses": {503: {"model": ReadyStatus, "description": "Kafka or Redis unreachable"},
                  500: {"model": ErrorBody}},
    "response_model_exclude_none": True,
}


@router.get("/readyz", **_READY)
@router.head("/readyz", operation_id="readyz_head", **_READY)
async def readyz(services: ServicesDep, response: Response) -> ReadyStatus:
    """Kafka (producer connected, metadata answers) and Redis (PING) are both reachable."""
    kafka, redis = await asyncio.gather(services.producer.ping(), services.reader.ping())
    checks = {"kafka": kafka, "redis": redis}
    if kafka and redis:
        return ReadyStatus(status="ready", checks=checks)
    # A 503 is an error: it carries the {"error": {...}} body every error has (API.md).
    response.status_code = 503
    down = [name for name, ok in (("Kafka", kafka), ("Redis", redis)) if not ok]
    # A wrong password or an untrusted certificate is no outage: name it.
    refusal = {"Kafka": services.producer.refusal, "Redis": services.reader.refusal}
    if any(refusal[name] for name in down):
        message = "; ".join(refusal[name] or f"{name} unreachable" for name in down)
    else:
        message = f"{' and '.join(down)} unreachable"
    return ReadyStatus(status="not_ready", checks=checks,
                       error=ErrorInfo(code="not_ready", message=message))


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}},
                     "description": "Prometheus text format"}},
)
async def metrics(services: ServicesDep) -> Response:
    """Prometheus metrics of this process, and Redis's memory against its maxmemory."""
    await _redis_memory(services)
    return Response(services.metrics.render(), media_type=CONTENT_TYPE_LATEST)


async def _redis_memory(services: Services) -> None:
    """Refresh the Redis memory gauges (left as they were when Redis does not answer):
    bytes summed over a cluster's masters, the alert from the fullest one (each master
    refuses writes to its own slots at its own ``maxmemory``)."""
    try:
        async with asyncio.timeout(1.0):
            memory = await memory_info_async(services.redis)
    except (RedisError, OSError, TimeoutError):
        return
    m = services.metrics
    m.redis_used_memory.set(memory["used_memory"])
    m.redis_maxmemory.set(memory["maxmemory"])
    ratio = memory["ratio"]
    near = ratio is not None and ratio >= services.settings.redis_memory_alert_ratio
    m.redis_memory_alert.set(1 if near else 0)
