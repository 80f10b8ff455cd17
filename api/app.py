"""Builds the FastAPI app: routers, error handlers, middleware, lifespan, OpenAPI.

``create_app(settings)`` is all a process or a test needs; the lifespan starts the Kafka
producer (connecting in the background), the Redis pool and the fallback snapshot, and
stops them again.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

import schemas
from api.auth import HEADER, KeyRing, OpsKeyMiddleware, check_config
from api.body import BodyLimitMiddleware
from api.dashboard_feed import DashboardFeed
from api.deps import Services
from api.errors import error_response, install_handlers
from api.experiments import Experiments
from api.fastpath import FastPath, FastPathMiddleware
from api.idempotency import HEADER as IDEMPOTENCY_HEADER
from api.idempotency import IdempotencyStore
from api.ingest import Ingestor
from api.metrics import Metrics, MetricsMiddleware, process_exited
from api.producer import EventProducer
from api.reader import Reader
from api.routes import (
    admin,
    attribution,
    catalog,
    dashboard,
    events,
    experiments,
    lookup,
    ops,
    privacy,
    promotions,
    recommend,
    sdk,
)
from api.script_conn import connect_redis
from api.tracking_conn import start_near_cache
from api.tracking_limits import TrackingLimiter
from api.utf8_guard import Utf8Guard
from core import __version__
from core.gc_tuning import tune_gc
from core.redis_keys import RedisKeys
from core.settings import Settings, get_settings
from schemas.merch import PromotionBody

log = logging.getLogger("streamrec.api")

#: Request bodies the routes parse themselves, published as OpenAPI components.
BODY_MODELS: tuple[type[BaseModel], ...] = (
    schemas.TrackingEvent,
    schemas.EventBatch,
    schemas.IdentifyRequest,
    schemas.ItemUpdate,
    schemas.ItemBatch,
    schemas.ExperimentSpec,
    PromotionBody,
)

DESCRIPTION = """Real-time recommendations: tracking events and catalog updates go to
Kafka (acknowledged before the 202), recommendation lists come from Redis.

Keys travel in the `X-API-Key` header: **tracking** keys for events and identify,
**read** keys for recommendations, **admin** keys for the catalog (and everything else).
Read and admin keys are rate-limited per request; tracking writes per event, per key,
source address and user/anonymous id (`429` with `Retry-After` when over a limit, `503`
when the limits cannot be counted).
Every error has the body `{"error": {"code", "message"}, "detail": [...]}`.

Recommendation lists carry a `recommendation_id`; send it back on `impression`,
`click`, `add_to_cart` and `purchase` events and `GET /v1/admin/attribution` reports
click-through and conversion per list origin and page context.

Experiments (`/v1/admin/experiments`) split entities into variants (the normal
recommendations, a popular list, or a holdout that gets none); every answer for an
enrolled entity says its `experiment` and the report measures the lift."""


class StreamrecAPI(FastAPI):
    """FastAPI with the recommendation fast path (:mod:`api.fastpath`) in front of its
    whole middleware stack; whatever the fast path does not answer goes through it."""

    fast_path: FastPath | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fast = self.fast_path
        if fast is None or not await fast.answer(scope, receive, send):
            await super().__call__(scope, receive, send)


class JsonCORSMiddleware(CORSMiddleware):
    """Starlette's CORS, whose refused preflight (400: origin, method or headers not
    allowed) carries the API's JSON error body instead of plain text."""

    def preflight_response(self, request_headers: Headers) -> Response:
        """The preflight answer; a refusal as ``{"error": {"code", "message"}}``."""
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        headers = {k: v for k, v in response.headers.items()
                   if k not in ("content-length", "content-type")}
        return error_response(response.status_code, "bad_request",
                              bytes(response.body).decode(), headers=headers)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    metrics: Metrics = app.state.metrics
    keyring = KeyRing.from_settings(settings)
    keyring.warn_if_open()
    producer = EventProducer(settings)
    redis = connect_redis(settings)
    reader = Reader(redis, settings, metrics)
    reader.experiments = experiments = Experiments(redis, producer, settings,
                                                   reader.check_rate)
    app.state.services = Services(
        settings=settings,
        keyring=keyring,
        metrics=metrics,
        producer=producer,
        redis=redis,
        reader=reader,
        experiments=experiments,
        ingestor=Ingestor(settings, producer, metrics,
                          TrackingLimiter(redis, settings, metrics),
                          IdempotencyStore(redis, RedisKeys(), settings.idempotency_ttl_s),
                          redis),
    )
    app.state.dashboard_feed = dashboard_feed = DashboardFeed(settings, redis)
    await producer.start()
    tracker = await start_near_cache(reader, redis, settings, metrics)
    reader.snapshot.start()
    if settings.api_gc_tuning:
        tune_gc()  # see core.gc_tuning: tens of ms of p99 at 1000 req/s
    try:
        yield
    finally:
        await dashboard_feed.close()
        await reader.snapshot.stop()
        if tracker is not None:
            tracker.close()
        reader.close()
        await producer.stop()
        await redis.aclose()
        process_exited()


def _openapi(app: FastAPI) -> dict[str, Any]:
    """OpenAPI document plus the request-body schemas of self-parsing routes."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes,
        tags=app.openapi_tags,
    )
    _, defs = models_json_schema(
        [(model, "validation") for model in BODY_MODELS],
        ref_template="#/components/schemas/{model}",
    )
    components = doc.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in defs.get("$defs", {}).items():
        components.setdefault(name, schema)
    app.openapi_schema = doc
    return doc


def _origins(raw: str) -> list[str]:
    """The configured CORS origins; ``https://shop.example/`` means the origin
    ``https://shop.example`` (browsers send origins without a trailing slash)."""
    return [o.strip().rstrip("/") or o.strip() for o in raw.split(",") if o.strip()]


def create_app(settings: Settings | None = None) -> FastAPI:
    """The streamrec API for ``settings`` (default: the process settings).

    Raises ``api.auth.InsecureConfig`` for keys or a bind address it must not serve with.
    """
    settings = settings or get_settings()
    check_config(settings)
    app = StreamrecAPI(
        title="streamrec",
        version=__version__,
        description=DESCRIPTION,
        lifespan=_lifespan,
        redirect_slashes=False,
        openapi_tags=[
            {"name": "tracking", "description": "Shopper events (tracking key)"},
            {"name": "catalog", "description": "Items and stock (admin key)"},
            {"name": "recommendations", "description": "Lists to show (read key)"},
            {"name": "operations", "description": "Health, readiness, metrics"},
            {"name": "experiments", "description": "Variants, holdouts and lift (admin key)"},
            {"name": "sdk", "description": "The browser SDK's script (no key)"},
            {"name": "merchandising", "description": "Promotions (admin key)"},
            {"name": "privacy", "description": "Forgetting a user (admin key)"},
        ],
    )
    app.state.settings = settings
    app.state.metrics = Metrics()
    install_handlers(app)
    for module in (events, catalog, recommend, ops, attribution, sdk, promotions, privacy):
        app.include_router(module.router)
    # admin before lookup: ids may contain "/", so GET /v1/admin/items/{id}/stats must be
    # tried before GET /v1/admin/items/{id} (which would take "x/stats" as an id).
    app.include_router(admin.router)
    app.include_router(lookup.router)
    app.include_router(dashboard.router)
    app.include_router(experiments.router)

    # Added innermost first: the size cap sees the raw body, CORS headers reach every
    # answer (413s included), and metrics time everything. The recommendation fast path
    # answers well-formed GETs in front of all of them, or innermost when CORS headers
    # must be added to its answers.
    origins = _origins(settings.cors_origins)
    app.add_middleware(Utf8Guard)
    if settings.api_fast_path and origins:
        app.add_middleware(FastPathMiddleware, fast_path=FastPath(app, None))
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.ops_require_key and settings.auth_enabled:
        app.add_middleware(OpsKeyMiddleware, keyring=KeyRing.from_settings(settings))
    if origins:
        app.add_middleware(
            JsonCORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
            allow_headers=[HEADER, "Content-Type", IDEMPOTENCY_HEADER],
            expose_headers=["Retry-After"],
            max_age=600,
        )
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics, routes=app.routes)
    if settings.api_fast_path and not origins:
        app.fast_path = FastPath(app, app.state.metrics)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app
