"""``Client``: the same API as :class:`~streamrec.client.aio.AsyncClient`, for code
without an event loop (web apps on threads, scripts, notebooks).

It runs one :class:`AsyncClient` on an event loop in a background thread of its own, so
batching, background delivery and retries are exactly those of the async client (one
implementation); each method hands its call to that loop and waits for the result.
Thread-safe: any thread may call it.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import logging
import threading
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import httpx

from schemas import Accepted, CatalogItem, ItemUpdate, ReadyStatus, RecommendationList
from streamrec.client.aio import AsyncClient, ClientStats
from streamrec.client.errors import ClientClosed, DeliveryError, StreamrecError
from streamrec.client.wire import QueryValue

T = TypeVar("T")
log = logging.getLogger("streamrec.client")


def _shutdown(aio: AsyncClient, loop: asyncio.AbstractEventLoop,
              thread: threading.Thread) -> None:
    """Close ``aio`` on its ``loop`` (a flush first; raises like it), then stop the
    loop's thread."""
    try:
        asyncio.run_coroutine_threadsafe(aio.close(), loop).result()
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        if not thread.is_alive():
            loop.close()


def _close_at_exit(aio: AsyncClient, loop: asyncio.AbstractEventLoop,
                   thread: threading.Thread) -> None:
    """At interpreter exit, close a client its owner never closed, whether the owner still
    holds it or dropped it (its thread and queue live on until then): its queued events
    would die with the daemon thread, unsaid."""
    try:
        _shutdown(aio, loop, thread)
    except StreamrecError as exc:  # already logged per batch; say it once more
        log.error("streamrec client closed at exit: %s", exc)


class Client:
    """Blocking client of the streamrec API; options as :class:`AsyncClient`'s.

    Use it as a context manager, or call :meth:`close` when done: events still queued
    are delivered then. A client never closed is closed when the interpreter exits
    (``atexit``), also one its owner no longer refers to, so a script or function that
    forgets ``close`` loses nothing.
    """

    def __init__(self, base_url: str, tracking_key: str | None = None,
                 read_key: str | None = None, admin_key: str | None = None,
                 **options: Any) -> None:
        self._aio = AsyncClient(base_url, tracking_key, read_key, admin_key, **options)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever,
                                        name="streamrec-client", daemon=True)
        self._thread.start()
        self._closed = False
        # the parts, not the Client: one dropped unclosed is closed at exit all the same
        self._at_exit = functools.partial(_close_at_exit, self._aio, self._loop, self._thread)
        atexit.register(self._at_exit)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc is None:
            self.close()
            return
        try:
            self.close()
        except DeliveryError:
            pass  # the exception under way matters more; the failure was logged

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            coro.close()
            raise ClientClosed("the client is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    @property
    def stats(self) -> ClientStats:
        """Requests, retries and events by fate (see :class:`ClientStats`)."""
        return self._aio.stats

    @property
    def queued(self) -> int:
        """Tracked events not yet handed to a delivery."""
        return self._aio.queued

    def track(self, type: str, *, user_id: str | None = None,
              anonymous_id: str | None = None, item_id: str | None = None,
              item_ids: Sequence[str] | None = None, recommendation_id: str | None = None,
              quantity: int | None = None, price: float | None = None,
              timestamp: datetime | str | None = None,
              context: Mapping[str, Any] | None = None, event_id: str | None = None) -> str:
        """Queue one event; returns its ``event_id`` (:meth:`AsyncClient.track`)."""
        return self._call(self._aio.track(
            type, user_id=user_id, anonymous_id=anonymous_id, item_id=item_id,
            item_ids=item_ids, recommendation_id=recommendation_id, quantity=quantity,
            price=price, timestamp=timestamp, context=context, event_id=event_id))

    def track_event(self, event: Mapping[str, Any]) -> str:
        """Queue one event given as the ``POST /v1/events`` object."""
        return self._call(self._aio.track_event(event))

    def identify(self, anonymous_id: str, user_id: str) -> Accepted:
        """Deliver what was tracked, then link the anonymous id to the user."""
        return self._call(self._aio.identify(anonymous_id, user_id))

    def flush(self) -> None:
        """Deliver everything tracked so far (:class:`DeliveryError` for what failed)."""
        self._call(self._aio.flush())

    def close(self) -> None:
        """Flush, release the connections and stop the background thread."""
        if self._closed:
            return
        atexit.unregister(self._at_exit)
        self._closed = True
        _shutdown(self._aio, self._loop, self._thread)

    def request(self, method: str, path: str, *, role: str | None = None, json: Any = None,
                params: Mapping[str, QueryValue] | None = None) -> httpx.Response:
        """Any other endpoint (``GET /v1/admin/attribution``, ...) under the same retry
        rule; ``role`` (``tracking``, ``read``, ``admin``) picks the key."""
        return self._call(self._aio.request(method, path, role=role, json=json,
                                            params=params))

    def recommendations(self, user_id: str, n: int = 10, context: str = "home", *,
                        item_id: str | None = None, exclude: Sequence[str] | None = None,
                        **params: QueryValue) -> RecommendationList:
        """A user's (or anonymous visitor's) list for a page context."""
        return self._call(self._aio.recommendations(
            user_id, n, context, item_id=item_id, exclude=exclude, **params))

    def similar(self, item_id: str, n: int = 10, *, user_id: str | None = None,
                **params: QueryValue) -> RecommendationList:
        """Items similar to ``item_id``."""
        return self._call(self._aio.similar(item_id, n, user_id=user_id, **params))

    def popular(self, n: int = 10, **params: QueryValue) -> RecommendationList:
        """The popular list."""
        return self._call(self._aio.popular(n, **params))

    def trending(self, n: int = 10, **params: QueryValue) -> RecommendationList:
        """The trending list."""
        return self._call(self._aio.trending(n, **params))

    def ready(self) -> ReadyStatus:
        """``GET /readyz`` once."""
        return self._call(self._aio.ready())

    def upsert_items(self, items: Iterable[CatalogItem | Mapping[str, Any]]) -> Accepted:
        """Items' full states, in chunks of at most 1000."""
        return self._call(self._aio.upsert_items(list(items)))

    def upsert_item(self, item_id: str, item: ItemUpdate | Mapping[str, Any]) -> Accepted:
        """One item's full state."""
        return self._call(self._aio.upsert_item(item_id, item))

    def delete_item(self, item_id: str) -> Accepted:
        """Delete an item: never recommended again."""
        return self._call(self._aio.delete_item(item_id))
