"""Runs the shop model's traffic against a live API through :mod:`streamrec.client`.

The client does the HTTP work: batching, up to :data:`MAX_IN_FLIGHT` batches at once,
event ids made at track time, and its one retry rule (the same ids on every retry, so a
retried batch counts once). This module paces the model's actions, keeps them in order
(an identify goes out only after the visitor's anonymous events were delivered: the
client's ``identify`` delivers what was tracked before it; stock changes are ``PUT`` in
the order they happened) and counts what happened for the report.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections import Counter
from collections.abc import Coroutine
from typing import Any

import httpx

from streamrec.client import (
    ApiError,
    AsyncClient,
    ConnectionFailed,
    DeliveryError,
    Forbidden,
    StreamrecError,
    Unauthorized,
)
from streamrec.progress import progress_bar
from streamrec.sim.config import SimulationConfig, SimulationError, SimulationReport
from streamrec.sim.shop_model import Action, Identify, ShopModel, StockChange, Track

log = logging.getLogger(__name__)

#: Event batches in flight at once.
MAX_IN_FLIGHT = 8
#: How long to wait for ``/readyz`` before sending anyway (the API may still be starting).
READY_TIMEOUT_S = 30.0


def _id_order(value: str) -> tuple[str, int]:
    """Sort key putting ``u2`` before ``u10``."""
    match = re.fullmatch(r"(.*?)(\d+)", value)
    return (match.group(1), int(match.group(2))) if match else (value, -1)


class _Runner:
    """One simulation against one API: pacing, ordering and the report."""

    def __init__(self, config: SimulationConfig,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        self.client = AsyncClient(
            config.api_url, config.tracking_key or None, admin_key=config.admin_key or None,
            retry=config.retry, batch_size=config.effective_batch_size,
            max_in_flight=MAX_IN_FLIGHT, on_error=self.delivery_failed, transport=transport,
        )
        self.model = ShopModel(
            items=config.items,
            users=config.users,
            out_of_stock=config.out_of_stock,
            anonymous_share=config.anonymous_share,
            seed=config.seed,
            id_salt=secrets.randbits(128) if config.id_salt is None else config.id_salt,
        )
        self.report = SimulationReport(items=[item.item_id for item in self.model.items])
        self._types: Counter[str] = Counter()
        self._stock_lock = asyncio.Lock()  # stock PUTs go out in the order they happened
        self._stock: dict[str, bool] = {}  # stock the API confirmed
        self._users: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._fatal: str | None = None

    # -- outcomes ----------------------------------------------------------------------------
    def failed(self, what: str, error: StreamrecError) -> None:
        """Count a request that finally failed; a refused key stops the run."""
        if isinstance(error, ApiError) and error.status < 500 and error.status != 429:
            self.report.rejected_4xx += 1
            if isinstance(error, Unauthorized | Forbidden):
                self._fatal = f"{what} refused with {error.status}: check the key"
        else:
            self.report.errors_5xx += 1
        log.warning("%s failed: %s", what, error)

    def delivery_failed(self, failure: DeliveryError) -> None:
        """The client's ``on_error``: a batch of events it could not deliver."""
        for error in failure.errors:
            self.failed("POST /v1/events", error)

    # -- phases ----------------------------------------------------------------------------
    async def wait_ready(self) -> None:
        """Wait until ``/readyz`` says ready; fail if the API never answers at all."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        answered = False
        last = ""
        while time.monotonic() < deadline:
            try:
                status = await self.client.ready()
            except ConnectionFailed as exc:
                last = str(exc)
            except ApiError as exc:  # an answer all the same: the API is there
                answered, last = True, str(exc)
            else:
                answered = True
                if status.status == "ready":
                    return
                last = f"/readyz says {status.checks}"
            await asyncio.sleep(0.25)
        if not answered:
            raise SimulationError(f"API not reachable at {self.config.api_url}: {last}")
        log.warning("API at %s is not ready (%s); sending anyway", self.config.api_url, last)

    async def post_catalog(self) -> None:
        """Post the initial catalog (the client splits it into requests of ≤ 1000)."""
        catalog = self.model.make_catalog()
        try:
            await self.client.upsert_items(catalog)
        except StreamrecError as exc:
            self.failed("POST /v1/items", exc)
            raise SimulationError(
                self._fatal or f"the API did not accept the catalog: {exc}") from exc
        self.report.catalog_items = len(catalog)
        self._stock.update((item["item_id"], item["in_stock"]) for item in catalog)

    async def pump(self, bar: Any) -> None:
        """Draw actions from the model, pace them a batch at a time, and hand them on."""
        config = self.config
        loop = asyncio.get_running_loop()
        budget = config.event_budget
        start = loop.time()
        deadline = None if config.max_events is not None else start + config.duration_s
        actions = self.model.traffic()
        sent = 0
        while self._fatal is None:
            if budget is not None and sent >= budget:
                break
            if deadline is not None and loop.time() >= deadline:
                break
            limit = config.effective_batch_size
            if budget is not None:
                limit = min(limit, budget - sent)
            chunk: list[Action] = []
            events = 0
            while events < limit:
                action = next(actions)
                chunk.append(action)
                events += isinstance(action, Track)
            if config.rate > 0:  # a batch's worth leaves once its events are due
                delay = start + (sent + events) / config.rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            await self._hand_on(chunk)
            sent += events
            bar.update(events)
        self.report.events_sent = sent

    async def _hand_on(self, chunk: list[Action]) -> None:
        """Track the chunk's events and start its identify calls and stock changes, in
        the order the model made them."""
        for action in chunk:
            if isinstance(action, Track):
                event = action.event
                self._types[event["type"]] += 1
                if "user_id" in event:
                    self._users.add(event["user_id"])
                await self.client.track_event(event)
            elif isinstance(action, Identify):
                self._spawn(self._identify(action))
            elif self.config.catalog:
                self._spawn(self._change_stock(action))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _identify(self, action: Identify) -> None:
        """No client timestamp: server time is after the visitor's events by construction."""
        try:
            await self.client.identify(action.anonymous_id, action.user_id)
        except StreamrecError as exc:
            self.failed("POST /v1/identify", exc)
            return
        self.report.identifies += 1
        self._users.add(action.user_id)

    async def _change_stock(self, action: StockChange) -> None:
        async with self._stock_lock:
            try:
                await self.client.upsert_item(action.item_id, action.body)
            except StreamrecError as exc:
                self.failed(f"PUT /v1/items/{action.item_id}", exc)
                return
            self._stock[action.item_id] = bool(action.body["in_stock"])
            self.report.stock_changes += 1

    async def drain(self) -> None:
        """Deliver every tracked event; wait for identify calls and stock changes."""
        try:
            await self.client.flush()
        except DeliveryError:
            pass  # counted as it happened (delivery_failed)
        while self._tasks:
            await asyncio.gather(*list(self._tasks))

    async def run(self) -> SimulationReport:
        """Wait for the API, post the catalog, send the traffic, report."""
        config = self.config
        await self.wait_ready()
        if config.catalog:
            await self.post_catalog()
        bar = progress_bar(
            total=config.event_budget, unit="ev", desc="simulate", enabled=config.progress
        )
        started = time.perf_counter()
        try:
            await self.pump(bar)
            await self.drain()
        finally:
            bar.close()
        if self._fatal is not None:
            raise SimulationError(self._fatal)
        return self._finish(time.perf_counter() - started)

    def _finish(self, elapsed: float) -> SimulationReport:
        report = self.report
        stats = self.client.stats
        report.events_accepted = stats.events_delivered
        report.batches = stats.batches
        report.retries = stats.retries
        report.status_counts = dict(stats.statuses)
        report.elapsed_s = round(elapsed, 3)
        report.achieved_rate = round(report.events_accepted / elapsed, 1) if elapsed > 0 else 0.0
        report.users = sorted(self._users, key=_id_order)
        report.out_of_stock_items = [
            item.item_id for item in self.model.items if self._stock.get(item.item_id) is False
        ]
        report.event_types = dict(self._types)
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
    runner = _Runner(config, transport)
    try:
        return await runner.run()
    finally:
        try:
            await runner.client.close()
        except DeliveryError:
            pass  # counted as it happened
