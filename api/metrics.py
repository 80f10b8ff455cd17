"""Prometheus metrics of the API process (one registry per app, so tests can build many).

``MetricsMiddleware`` counts every request by method, route template and status, and
times it; the services count accepted events, catalog records, produce failures, served
lists per source and Redis fallbacks. ``GET /metrics`` renders the registry.

Several API processes sharing one port (``streamrec up --api-processes M``: SO_REUSEPORT)
answer a scrape from whichever process the kernel picked, so each scrape would see one
process's counters, and rates would jump between them. With ``PROMETHEUS_MULTIPROC_DIR``
set (the stack sets it for its API processes; prometheus_client's convention), every
process keeps its values in files there and :meth:`Metrics.render` sums them all.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.stack_processes import pid_alive

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: The environment variable naming the directory of the API processes' shared values.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: The ``status`` of a request the client abandoned before it was answered (it closed
#: the connection, e.g. in the middle of its body): nothing was answered, least of all
#: a 500 (nginx's "client closed request").
CLIENT_GONE = 499
#: Scope key where the server's protocol leaves the status it answered itself while the
#: app still waited for the request's body (:mod:`api.http_protocol`'s 408).
ANSWERED_KEY = "streamrec.answered"


def shared_dir() -> str | None:
    """The directory the API processes of this host share their values in, or None."""
    return os.environ.get(MULTIPROC_ENV) or None


def process_exited() -> None:
    """Drop this process's live gauges from the shared values (its counters stay in the
    sums: totals never go backwards when a process restarts)."""
    if shared_dir():
        multiprocess.mark_process_dead(os.getpid())


def drop_dead_processes(path: str) -> None:
    """Drop the live gauges (requests in flight) of every process that left values in
    ``path`` and no longer runs: one killed (SIGKILL, the OOM killer) never ran
    :func:`process_exited`, and the requests it was answering stayed in flight in every
    later scrape. Its counters stay in the sums."""
    for live in Path(path).glob("gauge_live*_*.db"):
        pid = live.stem.rsplit("_", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            try:
                multiprocess.mark_process_dead(int(pid), path)
            except FileNotFoundError:
                pass  # another process's scrape dropped it first


class Metrics:
    """Every metric the API exports, on its own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "streamrec_api_requests", "HTTP requests", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "streamrec_api_request_duration_seconds", "HTTP request latency",
            ["method", "route"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.in_flight = Gauge("streamrec_api_requests_in_flight", "requests being served",
                               registry=r, multiprocess_mode="livesum")
        self.events_accepted = Counter(
            "streamrec_api_events_accepted", "tracking events acknowledged by Kafka", registry=r
        )
        self.catalog_records = Counter(
            "streamrec_api_catalog_records", "catalog records acknowledged by Kafka", registry=r
        )
        self.produce_failures = Counter(
            "streamrec_api_produce_failures", "requests answered 503 because Kafka did not ack",
            registry=r,
        )
        self.lists_served = Counter(
            "streamrec_api_lists_served", "recommendation lists by source", ["source"],
            registry=r,
        )
        self.rate_limited_events = Counter(
            "streamrec_api_rate_limited_events", "tracking events refused (429) by the limit "
            "that refused them", ["scope"], registry=r,
        )
        self.rate_limit_unavailable = Counter(
            "streamrec_api_rate_limit_unavailable", "tracking writes refused (503) because "
            "Redis could not count them against the limits", registry=r,
        )
        self.idempotent_replays = Counter(
            "streamrec_api_idempotent_replays", "POST /v1/events answered from an earlier "
            "request with the same Idempotency-Key", registry=r,
        )
        self.redis_fallbacks = Counter(
            "streamrec_api_redis_fallbacks", "lists served from the in-process snapshot "
            "because Redis failed", registry=r,
        )
        self.snapshot_refreshes = Counter(
            "streamrec_api_fallback_snapshot_refreshes", "refreshes of the in-process "
            "fallback snapshot from Redis", registry=r,
        )
        # The near cache (api.near_cache): hits and misses of cacheable lists, Redis's
        # reports of written keys, whole flushes, lists kept.
        self.near_hits = Counter("streamrec_api_near_cache_hits", "lists answered from "
                                 "the near cache", registry=r)
        self.near_misses = Counter("streamrec_api_near_cache_misses", "lists the near "
                                   "cache did not hold (read from Redis)", registry=r)
        self.near_reports = Counter("streamrec_api_near_cache_invalidations", "reports "
                                    "of written keys received from Redis", registry=r)
        self.near_flushes = Counter("streamrec_api_near_cache_flushes", "times the near "
                                    "cache was emptied whole", registry=r)
        self.near_entries = Gauge("streamrec_api_near_cache_entries", "lists in the near "
                                  "cache", registry=r, multiprocess_mode="livesum")
        # Read from Redis at each scrape: at maxmemory (noeviction) Redis refuses writes
        # and the worker stops consuming, so alert before (STREAMREC_REDIS_MEMORY_ALERT_RATIO).
        # One Redis, read by whichever process was scraped: the latest reading counts.
        self.redis_used_memory = Gauge(
            "streamrec_redis_used_memory_bytes", "Redis used_memory", registry=r,
            multiprocess_mode="mostrecent")
        self.redis_maxmemory = Gauge(
            "streamrec_redis_maxmemory_bytes", "Redis maxmemory (0 = no limit)", registry=r,
            multiprocess_mode="mostrecent")
        self.redis_memory_alert = Gauge(
            "streamrec_redis_memory_alert",
            "1 when Redis used memory reaches the alert share of maxmemory", registry=r,
            multiprocess_mode="mostrecent")

    def render(self) -> bytes:
        """The Prometheus text of this process, or of every API process sharing
        :func:`shared_dir` (summed) when there is one."""
        path = shared_dir()
        if path is None:
            return generate_latest(self.registry)
        drop_dead_processes(path)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=path)
        return generate_latest(registry)


#: The methods the API answers (OPTIONS: CORS preflights). The server's parser accepts
#: some 40 more (PROPFIND, MKCOL, ...); each would be a label value per route of its
#: own (a 405 each), so they are counted as one: ``other``.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    """The ``method`` label of a request: the method, or ``other`` for one the API never
    answers (a bounded set whatever clients send)."""
    return method if method in METHODS else "other"


def _leaf_routes(routes: Sequence[Any]) -> list[Any]:
    """``routes`` with the routers FastAPI includes (``original_router``) flattened."""
    leaves: list[Any] = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        leaves.extend(_leaf_routes(inner.routes) if inner is not None else [route])
    return leaves


def _template(route: Any) -> str | None:
    """A route's path template without the ``:id`` converters that let ids contain
    ``/``, so a label names the public path."""
    path = getattr(route, "path", None)
    return path.replace(":id}", "}") if isinstance(path, str) else None


class MetricsMiddleware:
    """Counts and times HTTP requests by route template (bounded label values)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, routes: Sequence[Any] = ()) -> None:
        """``routes``: the app's (read at the first request that needs them), to name the
        route of a request a middleware answered before the router saw it."""
        self.app = app
        self.metrics = metrics
        self._routes = routes
        self._leaves: list[Any] | None = None

    def route_label(self, scope: Scope) -> str:
        """The template of the route the router matched; for a request answered before
        routing (a 413 body, a refused preflight, /metrics without its key, a URL that
        is not UTF-8) the route its path would match, any method; ``unmatched`` for
        every path no route matches."""
        template = _template(scope.get("route"))
        if template is not None:
            return template
        if self._leaves is None:
            self._leaves = _leaf_routes(self._routes)
        partial = None
        for route in self._leaves:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return _template(route) or "unmatched"
            if match == Match.PARTIAL and partial is None:
                partial = route
        return _template(partial) or "unmatched"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0
        gone = False
        start = time.perf_counter()

        async def receive_wrapper() -> Message:
            nonlocal gone
            message = await receive()
            if message["type"] == "http.disconnect":
                gone = True
            return message

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive_wrapper, send_wrapper)
        finally:
            self.metrics.in_flight.dec()
            if not status:  # no answer from the app: an error (500), or nobody to answer
                status = scope.get(ANSWERED_KEY) or (CLIENT_GONE if gone else 500)
            route = self.route_label(scope)
            method = method_label(scope.get("method", "GET"))
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - start)
