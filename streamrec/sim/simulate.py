"""Realistic synthetic shop traffic, sent through the public HTTP API (``streamrec simulate``).

Two layers, so the shop model can be tested without any server:

* :class:`ShopModel` is pure and seeded. It holds a catalog (readable names, log-normal
  prices, ~20 categories, a share out of stock), shoppers with 1–3 preferred categories
  and Zipf item popularity, and produces interleaved shopping sessions as :data:`Action`
  values: tracking events, identify calls of anonymous visitors who log in, and stock
  changes.
* :func:`run_simulation` posts the catalog, then paces the model's actions against a
  running API with a small pool of async HTTP connections: events go in batches with
  client ``event_id``\\s (a retried batch is the same batch, so retries are idempotent),
  an identify is posted only after the visitor's anonymous events were accepted, and
  stock changes are ``PUT`` in the order they happened.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from streamrec.progress import progress_bar
from streamrec.sim.shop_model import (  # noqa: F401 - re-exported for callers and tests
    ADJECTIVES,
    CATEGORY_NOUNS,
    CHANNELS,
    Action,
    Identify,
    ShopItem,
    ShopModel,
    Shopper,
    StockChange,
    Track,
    zipf_weights,
)

log = logging.getLogger(__name__)

#: The API's limits (API.md): events per ``POST /v1/events``, items per ``POST /v1/items``.
MAX_BATCH_EVENTS = 500
MAX_BATCH_ITEMS = 1000
#: Event batches in flight at once; the connection pool has two more for identify/stock.
MAX_IN_FLIGHT = 8
#: Statuses that mean "nothing was taken, try the same request again".
RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_RETRIES = 6
#: How long to wait for ``/readyz`` before sending anyway (the API may still be starting).
READY_TIMEOUT_S = 30.0

@dataclass
class SimulationConfig:
    """What to simulate and where. ``max_events`` (when set) replaces ``duration_s``.

    ``rate`` is events per second (0 = as fast as the API accepts them); ``batch_size``
    above the API's limit of 500 is capped at 500. ``catalog=False`` skips every admin
    write (the catalog post and stock churn), e.g. when a previous run posted it.
    """

    api_url: str = "http://127.0.0.1:8000"
    rate: float = 200.0
    duration_s: float = 30.0
    max_events: int | None = None
    users: int = 300
    items: int = 500
    out_of_stock: float = 0.05
    anonymous_share: float = 0.2
    batch_size: int = 50
    seed: int = 42
    tracking_key: str = ""
    admin_key: str = ""
    catalog: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        if self.rate < 0 or self.duration_s < 0:
            raise ValueError("rate and duration_s must not be negative")
        if self.max_events is not None and self.max_events < 0:
            raise ValueError("max_events must not be negative")
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")

    @property
    def effective_batch_size(self) -> int:
        """Events per request: ``batch_size`` capped at the API's limit."""
        return min(self.batch_size, MAX_BATCH_EVENTS)

    @property
    def event_budget(self) -> int | None:
        """Events to send: ``max_events``, else ``rate × duration``; None = until time's up."""
        if self.max_events is not None:
            return self.max_events
        return round(self.rate * self.duration_s) if self.rate > 0 else None


@dataclass
class SimulationReport:
    """Outcome of a run; every count is of requests unless it says events.

    ``rejected_4xx`` counts requests the API finally refused (4xx other than 429),
    ``errors_5xx`` requests that still failed after every retry (5xx, 429 or no
    connection), ``retries`` every repeated attempt. ``users`` are the user ids that
    appeared (events or identify), ``items`` the whole catalog, ``out_of_stock_items``
    the items the API confirmed as out of stock at the end.
    """

    events_sent: int = 0
    events_accepted: int = 0
    batches: int = 0
    rejected_4xx: int = 0
    errors_5xx: int = 0
    retries: int = 0
    identifies: int = 0
    catalog_items: int = 0
    stock_changes: int = 0
    elapsed_s: float = 0.0
    achieved_rate: float = 0.0
    users: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    out_of_stock_items: list[str] = field(default_factory=list)
    event_types: dict[str, int] = field(default_factory=dict)
    status_counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Every event accepted and no request failed."""
        return (
            self.events_accepted == self.events_sent
            and self.rejected_4xx == 0
            and self.errors_5xx == 0
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every field."""
        return asdict(self)

    def summary(self) -> str:
        """Two human-readable lines."""
        return (
            f"sent {self.events_sent} events in {self.elapsed_s:.1f} s "
            f"({self.achieved_rate:.0f} accepted/s): {self.events_accepted} accepted in "
            f"{self.batches} batches; {self.rejected_4xx} rejected (4xx), "
            f"{self.errors_5xx} failed (5xx/connection), {self.retries} retries\n"
            f"catalog {self.catalog_items} items ({len(self.out_of_stock_items)} out of stock), "
            f"{self.stock_changes} stock changes; {len(self.users)} users, "
            f"{self.identifies} identify calls"
        )


class SimulationError(RuntimeError):
    """The run cannot go on: API unreachable, key refused, or catalog not accepted."""


# --- the HTTP runner ----------------------------------------------------------------------
def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="microseconds")


def _id_order(value: str) -> tuple[str, int]:
    """Sort key putting ``u2`` before ``u10``."""
    match = re.fullmatch(r"(.*?)(\d+)", value)
    return (match.group(1), int(match.group(2))) if match else (value, -1)


class _Runner:
    """One simulation against one API: counters, pacing, retries and ordering."""

    def __init__(self, config: SimulationConfig, client: httpx.AsyncClient) -> None:
        self.config = config
        self.client = client
        self.model = ShopModel(
            items=config.items,
            users=config.users,
            out_of_stock=config.out_of_stock,
            anonymous_share=config.anonymous_share,
            seed=config.seed,
        )
        self.report = SimulationReport(items=[item.item_id for item in self.model.items])
        self._jitter = random.Random(config.seed + 1)  # timing only, never content
        self._statuses: Counter[str] = Counter()
        self._types: Counter[str] = Counter()
        self._in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)
        # batches complete out of order; ``_low`` = every batch below it has completed
        self._completed: set[int] = set()
        self._low = 0
        self._progress_cond = asyncio.Condition()
        self._anon_batch: dict[str, int] = {}  # anonymous id → last batch holding its events
        self._stock_lock = asyncio.Lock()  # stock PUTs go out in the order they happened
        self._stock: dict[str, bool] = {}  # stock the API confirmed
        self._users: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._fatal: str | None = None
        self._bar: Any = None

    # -- requests ------------------------------------------------------------------------
    def _backoff(self, attempt: int, retry_after: str | None) -> float:
        if retry_after:
            try:
                return min(5.0, max(0.0, float(retry_after)))
            except ValueError:
                pass
        return min(3.0, 0.1 * 2**attempt) * self._jitter.uniform(0.5, 1.0)

    async def request(
        self, method: str, path: str, body: dict[str, Any], key: str
    ) -> httpx.Response | None:
        """Send with retries on 429/502/503/504 and connection errors; None unless 2xx.

        The body is built once, so a retry repeats exactly the same event ids.
        """
        headers = {"X-API-Key": key} if key else {}
        delay = 0.0
        response: httpx.Response | None = None
        for attempt in range(MAX_RETRIES + 1):
            if attempt:
                self.report.retries += 1
                await asyncio.sleep(delay)
            try:
                response = await self.client.request(method, path, json=body, headers=headers)
            except httpx.TransportError as exc:
                self._statuses["connection_error"] += 1
                log.debug("%s %s: %s", method, path, exc)
                response = None
                delay = self._backoff(attempt, None)
                continue
            self._statuses[str(response.status_code)] += 1
            if response.status_code not in RETRY_STATUSES:
                break
            delay = self._backoff(attempt, response.headers.get("Retry-After"))
        if response is not None and response.is_success:
            return response
        if response is None or response.status_code >= 500 or response.status_code == 429:
            self.report.errors_5xx += 1
            outcome = "no connection" if response is None else f"status {response.status_code}"
            log.warning("%s %s failed (%s, attempt %d)", method, path, outcome, attempt + 1)
            return None
        self.report.rejected_4xx += 1
        log.warning("%s %s → %d: %s", method, path, response.status_code, response.text[:500])
        if response.status_code in (401, 403):
            self._fatal = f"{method} {path} refused with {response.status_code}: check the key"
        return None

    async def wait_ready(self) -> None:
        """Wait until ``/readyz`` says ready; fail if the API never answers at all."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        answered = False
        last = ""
        while time.monotonic() < deadline:
            try:
                response = await self.client.get("/readyz")
                answered = True
                if response.status_code < 500:
                    return
                last = f"/readyz answered {response.status_code}"
            except httpx.TransportError as exc:
                last = str(exc) or type(exc).__name__
            await asyncio.sleep(0.25)
        if not answered:
            raise SimulationError(f"API not reachable at {self.config.api_url}: {last}")
        log.warning("API at %s is not ready (%s); sending anyway", self.config.api_url, last)

    # -- phases ----------------------------------------------------------------------------
    async def post_catalog(self) -> None:
        """Post the initial catalog in chunks of at most 1000 items."""
        catalog = self.model.make_catalog()
        for start in range(0, len(catalog), MAX_BATCH_ITEMS):
            chunk = catalog[start : start + MAX_BATCH_ITEMS]
            response = await self.request(
                "POST", "/v1/items", {"items": chunk}, self.config.admin_key
            )
            if response is None:
                raise SimulationError(self._fatal or "the API did not accept the catalog")
            self.report.catalog_items += len(chunk)
            self._stock.update((item["item_id"], item["in_stock"]) for item in chunk)

    async def pump(self) -> None:
        """Draw actions from the model, fill batches, pace them and send them."""
        config = self.config
        loop = asyncio.get_running_loop()
        budget = config.event_budget
        start = loop.time()
        deadline = None if config.max_events is not None else start + config.duration_s
        actions = self.model.traffic()
        batch: list[dict[str, Any]] = []
        seq = sent = 0
        while self._fatal is None:
            if budget is not None and sent >= budget:
                break
            if deadline is not None and loop.time() >= deadline:
                break
            limit = config.effective_batch_size
            if budget is not None:
                limit = min(limit, budget - sent)
            while len(batch) < limit:
                action = next(actions)
                if isinstance(action, Track):
                    self._note(action.event, seq)
                    batch.append(action.event)
                elif isinstance(action, Identify):
                    after = self._anon_batch.pop(action.anonymous_id, -1)
                    self._spawn(self._identify(action, after))
                elif config.catalog:
                    self._spawn(self._change_stock(action))
            if config.rate > 0:  # a batch leaves once its events are due, like an SDK buffer
                delay = start + (sent + len(batch)) / config.rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            await self._in_flight.acquire()
            self._spawn(self._send_batch(seq, self._stamped(batch)))
            sent += len(batch)
            seq += 1
            batch = []
        self.report.events_sent = sent
        self.report.batches = seq
        async with self._progress_cond:  # wake identify calls if we stopped early
            self._progress_cond.notify_all()

    def _stamped(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Copies with client timestamps spread evenly up to now, as the rate spaces them.

        Event time then follows generation order even when concurrent batches reach Kafka
        out of order; a retried batch keeps its timestamps (and ids).
        """
        spacing = 1.0 / self.config.rate if self.config.rate > 0 else 1e-6
        now = time.time()
        last = len(batch) - 1
        return [
            {**event, "timestamp": _iso(now - (last - index) * spacing)}
            for index, event in enumerate(batch)
        ]

    def _note(self, event: dict[str, Any], seq: int) -> None:
        """Count the event and remember which batch holds an anonymous visitor's events."""
        self._types[event["type"]] += 1
        if "user_id" in event:
            self._users.add(event["user_id"])
        else:
            self._anon_batch[event["anonymous_id"]] = seq
            if len(self._anon_batch) > 50_000:  # forget visitors whose batches are done
                low = self._low
                self._anon_batch = {k: v for k, v in self._anon_batch.items() if v >= low}

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_batch(self, seq: int, events: list[dict[str, Any]]) -> None:
        try:
            response = await self.request(
                "POST", "/v1/events", {"events": events}, self.config.tracking_key
            )
            if response is not None:
                try:
                    accepted = int(response.json().get("accepted", len(events)))
                except (ValueError, AttributeError):
                    accepted = len(events)
                self.report.events_accepted += accepted
            if self._bar is not None:
                self._bar.update(len(events))
        finally:
            self._in_flight.release()
            async with self._progress_cond:
                self._completed.add(seq)
                while self._low in self._completed:
                    self._completed.remove(self._low)
                    self._low += 1
                self._progress_cond.notify_all()

    async def _identify(self, action: Identify, after_batch: int) -> None:
        """Identify once every batch up to the visitor's last anonymous one completed.

        The API keys identify by the anonymous id, so it lands after those events on the
        same partition only if they were produced first. No client timestamp: server
        time is after those events' times by construction.
        """
        async with self._progress_cond:
            await self._progress_cond.wait_for(
                lambda: self._low > after_batch or self._fatal is not None
            )
        if self._fatal is not None:
            return
        body = {"anonymous_id": action.anonymous_id, "user_id": action.user_id}
        if await self.request("POST", "/v1/identify", body, self.config.tracking_key):
            self.report.identifies += 1
            self._users.add(action.user_id)

    async def _change_stock(self, action: StockChange) -> None:
        async with self._stock_lock:
            path = f"/v1/items/{quote(action.item_id, safe='')}"
            if await self.request("PUT", path, action.body, self.config.admin_key):
                self._stock[action.item_id] = bool(action.body["in_stock"])
                self.report.stock_changes += 1

    async def drain(self) -> None:
        """Wait for every batch, identify and stock change still in flight."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks))

    async def run(self) -> SimulationReport:
        """Wait for the API, post the catalog, send the traffic, report."""
        config = self.config
        await self.wait_ready()
        if config.catalog:
            await self.post_catalog()
        self._bar = progress_bar(
            total=config.event_budget, unit="ev", desc="simulate", enabled=config.progress
        )
        started = time.perf_counter()
        try:
            await self.pump()
            await self.drain()
        finally:
            self._bar.close()
        if self._fatal is not None:
            raise SimulationError(self._fatal)
        return self._finish(time.perf_counter() - started)

    def _finish(self, elapsed: float) -> SimulationReport:
        report = self.report
        report.elapsed_s = round(elapsed, 3)
        report.achieved_rate = round(report.events_accepted / elapsed, 1) if elapsed > 0 else 0.0
        report.users = sorted(self._users, key=_id_order)
        report.out_of_stock_items = [
            item.item_id for item in self.model.items if self._stock.get(item.item_id) is False
        ]
        report.event_types = dict(self._types)
        report.status_counts = dict(self._statuses)
        return report


async def run_simulation(
    config: SimulationConfig, *, transport: httpx.AsyncBaseTransport | None = None
) -> SimulationReport:
    """Run the simulation against ``config.api_url`` and report what happened.

    Waits for the API, posts the catalog (unless ``config.catalog`` is false), then sends
    traffic until the event budget or the duration is used up and every request is
    answered. ``transport`` replaces the network (tests pass an ``httpx.MockTransport``).
    Raises :class:`SimulationError` when the API is unreachable or refuses a key.
    """
    limits = httpx.Limits(
        max_connections=MAX_IN_FLIGHT + 2, max_keepalive_connections=MAX_IN_FLIGHT + 2
    )
    timeout = httpx.Timeout(10.0, pool=60.0)
    async with httpx.AsyncClient(
        base_url=config.api_url, limits=limits, timeout=timeout, transport=transport
    ) as client:
        return await _Runner(config, client).run()


# --- command line -------------------------------------------------------------------------
def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the ``streamrec simulate`` options to ``parser``."""
    defaults = SimulationConfig()
    parser.add_argument(
        "--api-url",
        default=None,
        help=f"base URL of the API (default: from STREAMREC_API_HOST/PORT, {defaults.api_url})",
    )
    parser.add_argument(
        "--rate", type=float, default=defaults.rate, help="events per second; 0 = unthrottled"
    )
    parser.add_argument(
        "--duration", type=float, default=defaults.duration_s, help="seconds to run"
    )
    parser.add_argument(
        "--events", type=int, default=None, help="send this many events (replaces --duration)"
    )
    parser.add_argument("--users", type=int, default=defaults.users, help="known shoppers")
    parser.add_argument("--items", type=int, default=defaults.items, help="catalog size")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed")
    parser.add_argument(
        "--batch-size", type=int, default=defaults.batch_size, help="events per request (≤500)"
    )
    parser.add_argument(
        "--anonymous-share",
        type=float,
        default=defaults.anonymous_share,
        help="share of sessions by anonymous visitors",
    )
    parser.add_argument(
        "--out-of-stock",
        type=float,
        default=defaults.out_of_stock,
        help="share of the catalog out of stock",
    )
    parser.add_argument(
        "--no-catalog", action="store_true", help="skip catalog and stock writes (admin)"
    )
    parser.add_argument(
        "--tracking-key", default=None, help="default: first of STREAMREC_TRACKING_KEYS"
    )
    parser.add_argument("--admin-key", default=None, help="default: first of STREAMREC_ADMIN_KEYS")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _first_key(raw: str) -> str:
    return next((key.strip() for key in raw.split(",") if key.strip()), "")


def config_from_args(args: argparse.Namespace) -> SimulationConfig:
    """Build the config from parsed options; what is not given comes from the settings.

    Keys default to the first of ``STREAMREC_TRACKING_KEYS`` / ``STREAMREC_ADMIN_KEYS``,
    the API URL to ``STREAMREC_API_HOST``/``STREAMREC_API_PORT`` (a wildcard bind
    address becomes 127.0.0.1).
    """
    from core.settings import get_settings

    settings = get_settings()
    tracking_key = getattr(args, "tracking_key", None)
    admin_key = getattr(args, "admin_key", None)
    api_url = getattr(args, "api_url", None)
    if tracking_key is None:
        tracking_key = _first_key(settings.tracking_keys)
    if admin_key is None:
        admin_key = _first_key(settings.admin_keys)
    if api_url is None:
        host = settings.api_host if settings.api_host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        api_url = f"http://{host}:{settings.api_port}"
    return SimulationConfig(
        api_url=api_url,
        rate=args.rate,
        duration_s=args.duration,
        max_events=args.events,
        users=args.users,
        items=args.items,
        out_of_stock=args.out_of_stock,
        anonymous_share=args.anonymous_share,
        batch_size=args.batch_size,
        seed=args.seed,
        tracking_key=tracking_key,
        admin_key=admin_key,
        catalog=not args.no_catalog,
        progress=not args.quiet,
    )


def run(args: argparse.Namespace) -> int:
    """``streamrec simulate``: 0 when every event was accepted, 1 when some were not,
    2 when the run could not go on (unreachable API, refused key, bad option)."""
    try:
        config = config_from_args(args)
        report = asyncio.run(run_simulation(config))
    except (SimulationError, ValueError) as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("simulate: interrupted", file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.summary())
    return 0 if report.ok else 1
