"""The in-process popular list served when Redis is unreachable (``source: "fallback"``).

Refreshed from Redis every few seconds in the background; it may be empty (Redis was
never reachable). Between two refreshes it checks its items against the out-of-stock and
deleted set every ``CHECK_INTERVAL_S`` (one ``SMISMEMBER`` of at most 200 ids, against a
13 M-instruction refresh), so an item that goes out of stock leaves it within about a
second even when Redis goes away right after (API.md: never returned by any endpoint);
an item back in stock returns with the next refresh. Serving from it never touches the
network, so Redis outages never become 5xx answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError

from api.explain import GENERIC
from api.filters import Merch, snapshot_items
from core.attribution import new_recommendation_id

log = logging.getLogger("streamrec.api")

#: Seconds between refreshes.
REFRESH_INTERVAL_S = 5.0
#: Seconds between stock checks of the items held.
CHECK_INTERVAL_S = 0.5


class FallbackSnapshot:
    """A periodically refreshed copy of the (already filtered) popular list."""

    def __init__(
        self,
        load: Callable[[], Awaitable[dict[str, Any]]],
        *,
        interval_s: float = REFRESH_INTERVAL_S,
        unavailable: Callable[[list[str]], Awaitable[list[bool]]] | None = None,
        check_s: float = CHECK_INTERVAL_S,
        on_refresh: Callable[[], object] | None = None,
    ) -> None:
        self._load = load
        #: Called after each successful refresh (the API counts them in ``/metrics``).
        self._on_refresh = on_refresh
        self._interval_s = interval_s
        self._unavailable = unavailable
        self._check_s = min(check_s, interval_s)
        self._items: list[dict[str, Any]] = []
        self._model_version = "none"
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def size(self) -> int:
        """Items currently held."""
        return len(self._items)

    async def refresh(self) -> bool:
        """Reload from Redis now; keeps the previous copy on failure. True on success."""
        try:
            fresh = await asyncio.wait_for(self._load(), timeout=max(1.0, self._interval_s))
        except (RedisError, OSError, TimeoutError) as exc:
            log.debug("fallback snapshot not refreshed: %s", exc)
            return False
        self._items = [{**item, "reason": "fallback", "reason_text": GENERIC["fallback"]}
                       for item in fresh["items"]]
        self._model_version = fresh["model_version"]
        if self._on_refresh is not None:
            self._on_refresh()
        return True

    async def drop_unavailable(self) -> bool:
        """Drop the items Redis now lists as out of stock or deleted; keeps the copy as it
        is on failure. True on success."""
        held = self._items
        if self._unavailable is None or not held:
            return True
        try:
            gone = await asyncio.wait_for(self._unavailable([i["item_id"] for i in held]),
                                          timeout=max(0.5, self._check_s))
        except (RedisError, OSError, TimeoutError) as exc:
            log.debug("fallback snapshot stock not checked: %s", exc)
            return False
        if any(gone) and self._items is held:
            self._items = [item for item, out in zip(held, gone, strict=True) if not out]
        return True

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due = 0.0
        while not self._stopping:
            if loop.time() >= due:
                due = loop.time() + self._interval_s
                await self.refresh()
            else:
                await self.drop_unavailable()
            await asyncio.sleep(self._check_s)

    def start(self) -> None:
        """Refresh now and every ``interval_s`` in the background."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="fallback-snapshot")

    async def stop(self) -> None:
        """Stop refreshing."""
        self._stopping = True
        task, self._task = self._task, None
        if task is None:
            return
        # A cancellation that races asyncio.wait_for around a Redis call can be swallowed
        # (Python 3.11), leaving the loop running: cancel again until it ends (bounded).
        for _ in range(50):
            if task.done():
                break
            task.cancel()
            await asyncio.wait({task}, timeout=0.1)
        if task.done():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                task.result()
        else:
            log.warning("fallback snapshot refresher did not stop; abandoning it")

    def serve(self, n: int, *, blocked: frozenset[str] = frozenset(),
              context: str = "home", merch: Merch | None = None,
              default_cap: int = 0) -> dict[str, Any]:
        """Up to ``n`` snapshot items not in ``blocked`` that pass the request's filters
        and category cap (a ``RecommendationList`` body; with ``explain``, its trace)."""
        items = snapshot_items(self._items, n, blocked, merch, default_cap)
        body: dict[str, Any] = {
            "recommendation_id": new_recommendation_id(context, "fallback"),
            "source": "fallback",
            "model_version": self._model_version,
            "context": context,
            "items": items,
        }
        if merch is not None and merch.explain:
            body["trace"] = {"sources": [{"name": "fallback", "size": len(self._items),
                                          "age_s": None, "model_version": self._model_version}],
                             "dropped": [], "dropped_total": 0}
        return body
