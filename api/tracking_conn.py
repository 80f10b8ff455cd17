"""Redis's reports of written keys for the near cache (:mod:`api.near_cache`).

Two connections: the serve connection (:class:`api.script_conn.ScriptConnection`) turns
tracking on (``CLIENT TRACKING ON REDIRECT <id> BCAST PREFIX ...``, on every new
connection, before its first batch), and a listener connection, whose client id that
is, ``SUBSCRIBE``\\ s to ``__redis__:invalidate`` and hands each report (the written keys,
or nil after a flush) to the cache. ``NOLOOP`` is not used: the serve connection writes
nothing under the tracked prefixes (rate-limit keys live outside them), and if it ever
did, the cache must hear of it too.

The cache is used only while tracking is confirmed on the serve connection for the
listener's current id: losing either connection (a ``CLIENT KILL``, a restart, a
timeout) empties it and stops its use at once; the listener is reopened every
``RETRY_S`` and tracking turned on again (``OFF`` then ``ON``: Redis refuses a prefix
given twice), then the cache starts empty. After :data:`DORMANT_AFTER_S` without a
cacheable list (an API that only ingests, a quiet night) tracking is turned off and the
cache emptied; the next list turns it on again within ``RETRY_S`` (read from Redis
meanwhile): Redis reports every write under the prefixes, kept lists or not.

At start-up a self-test writes :attr:`core.merch_keys.MerchKeys.serve_cache_probe` from
the redis-py pool and waits for its report; the cache is used only once one passed. A
Redis without client-side caching (before 6.0), a proxy that drops ``CLIENT TRACKING``,
or anything else that answers but fails it, runs without the cache (logged once). A Redis
that cannot be reached yet (the API started first) is tried again every ``RETRY_S``, the
cache unused meanwhile, so an API that came up before its Redis still gets its cache. A
Redis Cluster never gets here (no serve connection).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import deque
from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from api.near_cache import EXPERIMENTS, PROMOTIONS, NearCache, tracked_prefixes
from api.script_conn import CONNECT_TIMEOUT_S, ScriptConnection, pack
from core.redis_keys import RedisKeys
from core.settings import Settings

log = logging.getLogger("streamrec.api")

CHANNEL = "__redis__:invalidate"
#: Seconds between attempts to reopen a lost listener; the self-test's wait.
RETRY_S = 1.0
#: Seconds without a cacheable list after which tracking is turned off until the next
#: one: Redis pays for every key written under the tracked prefixes (~20 µs per event of
#: a burst on one Redis, and the API ~12 µs: alternating pairs with the cache on and off,
#: 2026-12-07) whether or not anything is kept.
DORMANT_AFTER_S = 30.0
SELF_TEST_S = 2.0
#: Failures that say Redis was not reached (rather than that it refused tracking).
UNREACHABLE = (OSError, TimeoutError, RedisConnectionError, RedisTimeoutError)


class _Listener(asyncio.Protocol):
    """The subscribed connection: setup replies in order, then reports."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self.reader = hiredis.Reader(encoding="utf-8", errors="replace")
        self.waiters: deque[asyncio.Future[Any]] = deque()
        self.transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            if isinstance(reply, list) and len(reply) == 3 and reply[0] == "message":
                self.tracker.reported(reply[2])
            elif self.waiters:
                waiter = self.waiters.popleft()
                if not waiter.done():
                    waiter.set_result(reply)

    def eof_received(self) -> bool | None:
        # at once, in this read: connection_lost comes a turn of the loop later
        self.tracker.listener_lost(self)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        for waiter in self.waiters:
            if not waiter.done():
                waiter.set_exception(ConnectionError("listener lost"))
        self.tracker.listener_lost(self)

    def call(self, *args: Any) -> asyncio.Future[Any]:
        """Send one command; the future gets its reply."""
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        assert self.transport is not None
        self.transport.write(pack(*args))
        return waiter

    def close(self) -> None:
        """Close the connection."""
        if self.transport is not None:
            self.transport.close()


class Tracker:
    """Keeps ``cache`` live while Redis reports writes to it over two connections."""

    def __init__(self, conn: ScriptConnection, cache: NearCache, redis: Redis,
                 keys: RedisKeys) -> None:
        self._conn, self._cache, self._redis, self._keys = conn, cache, redis, keys
        self._listener: _Listener | None = None
        self._client_id: int | None = None
        self._tracked: Any = None  # the serve connection's protocol tracking is on for
        self._probe: tuple[str, asyncio.Future[None]] | None = None
        #: True once a self-test saw Redis report a write: the cache may go live.
        self._proven = False
        #: True while tracking is off for want of cacheable lists (DORMANT_AFTER_S).
        self.dormant = False
        self._task: asyncio.Task[None] | None = None
        self._prefixes = [arg for prefix in tracked_prefixes(keys)
                          for arg in ("PREFIX", prefix)]
        conn.on_open, conn.on_lost = self._track, self._serve_lost

    # -- reports -------------------------------------------------------------------
    def reported(self, names: list[str] | None) -> None:
        """A report from Redis: the written keys (None: a flush)."""
        probe = self._probe
        if probe is not None and names is not None and probe[0] in names:
            if not probe[1].done():
                probe[1].set_result(None)
        self._cache.invalidated(names)

    def _down(self) -> None:
        self._cache.live = False
        self._cache.flush()

    def listener_lost(self, listener: _Listener) -> None:
        """The listener closed: reports may be lost from now on."""
        if listener is self._listener:
            # tracking must be turned on again, for the next listener's id
            self._listener, self._client_id, self._tracked = None, None, None
            self._down()

    def _serve_lost(self, proto: Any) -> None:
        if proto is self._tracked:
            self._tracked = None
            self._down()

    # -- connections ---------------------------------------------------------------
    async def _listen(self) -> None:
        opts = self._conn.opts
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            _, listener = await loop.create_connection(
                lambda: _Listener(self), opts.get("host", "localhost"), opts.get("port", 6379))
            try:
                if opts.get("password"):
                    auth = [opts["username"]] if opts.get("username") else []
                    await listener.call("AUTH", *auth, opts["password"])
                client_id = int(await listener.call("CLIENT", "ID"))
                await listener.call("SUBSCRIBE", CHANNEL)
            except BaseException:
                listener.close()
                raise
        self._listener, self._client_id = listener, client_id

    async def _track(self, proto: Any) -> None:
        """Turn tracking on for ``proto`` (a new serve connection, or the listener's new
        id); the cache goes live, empty, once Redis confirmed. Never raises."""
        self._down()
        self._tracked = None
        if self._client_id is None or proto.closed or self.dormant:
            return
        try:
            await proto.call(pack("CLIENT", "TRACKING", "OFF"))
            reply = await proto.call(pack("CLIENT", "TRACKING", "ON", "REDIRECT",
                                          self._client_id, "BCAST", *self._prefixes))
        except Exception as exc:  # a Redis or proxy without tracking: no cache
            log.debug("near cache: tracking not turned on: %r", exc)
            return
        if reply == "OK" and not proto.closed and self._listener is not None:
            self._tracked = proto
            self._cache.flush()
            self._cache.live = self._proven

    async def _establish(self) -> None:
        """Open the listener if there is none, (re)open the serve connection, and turn
        tracking on there if it is not on yet."""
        if self._listener is None:
            await self._listen()
        await self._conn.send(pack("PING"))  # (re)opens the serve connection
        proto = self._conn.protocol
        if proto is not None and proto is not self._tracked:
            await self._track(proto)

    async def _keep(self) -> None:
        """Every ``RETRY_S``: until a self-test passed, run one (stop for good when Redis
        answered and failed it); after, reopen a lost listener and turn tracking on again."""
        while True:
            await asyncio.sleep(RETRY_S)
            if not self._proven:
                if await self._self_test() is False:
                    self._task = None  # this task ends here; close() must not cancel it
                    self.close()
                    return
                continue
            if await self._rest():
                continue
            if self._listener is not None and self._tracked is not None:
                continue
            try:
                await self._establish()
            except Exception as exc:
                log.debug("near cache: tracking not re-established: %r", exc)

    async def _rest(self) -> bool:
        """Tracking off once no cacheable list came for :data:`DORMANT_AFTER_S` (the
        cache empties and is unused), on again (by :meth:`_keep`'s next step) once one
        came; True while it stays off."""
        idle = time.monotonic() - self._cache.last_read >= DORMANT_AFTER_S
        if self.dormant and not idle:
            self.dormant = False
            log.debug("near cache: a list asked for: tracking on again")
            return False
        if self.dormant or not idle or self._tracked is None:
            return self.dormant
        proto, self._tracked = self._tracked, None
        self._down()
        self.dormant = True
        log.debug("near cache: no list for %.0f s: tracking off", DORMANT_AFTER_S)
        with contextlib.suppress(Exception):  # a lost connection tracks nothing anyway
            await proto.call(pack("CLIENT", "TRACKING", "OFF"))
        return True

    async def _self_test(self) -> bool | None:
        """Write the probe key and wait for its report: True (passed: the cache is live),
        None (Redis not reached: try again later), False (Redis failed it: no cache)."""
        try:
            async with asyncio.timeout(SELF_TEST_S):
                await self._establish()
                if self._tracked is None:
                    raise RuntimeError("CLIENT TRACKING was not turned on")
                token = secrets.token_hex(4)
                done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._probe = (self._keys.serve_cache_probe, done)
                await self._redis.set(self._keys.serve_cache_probe, token, ex=60)
                await done
        except Exception as exc:
            if self._tracked is None and isinstance(exc, UNREACHABLE):
                log.debug("near cache: Redis not reached for the self-test: %r", exc)
                return None
            log.warning("near cache off: Redis did not report a write to a tracked key "
                        "(%r); lists are read from Redis every time", exc)
            return False
        finally:
            self._probe = None
        self._proven = True
        self._cache.flush()
        self._cache.live = self._tracked is not None
        log.info("near cache on: up to %d lists", self._cache.max_entries)
        return True

    async def start(self) -> bool:
        """Run the self-test; True when it passed or Redis was not reached (then it is
        retried every ``RETRY_S``, the cache unused until one passes), and the cache is
        kept up from now on; False when Redis failed it (no cache for this process)."""
        passed = await self._self_test()
        if passed is False:
            self.close()
            return False
        if passed is None:
            log.warning("near cache waiting: Redis not reached; its self-test is tried "
                        "again every %.0f s, lists are read from Redis until it passes",
                        RETRY_S)
        self._task = asyncio.get_running_loop().create_task(self._keep())
        return True

    def close(self) -> None:
        """Stop: the cache is emptied and unused."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._tracked = None
        self._down()
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(Exception):
                listener.close()


async def start_near_cache(reader: Any, redis: Redis, settings: Settings,
                           metrics: Any) -> Tracker | None:
    """Give ``reader`` (``api.reader.Reader``) a near cache when the settings want one,
    it has a serve connection, and the self-test passes; the tracker to close, or None."""
    conn = reader.serve_conn
    if settings.serve_cache_entries <= 0 or conn is None:
        return None

    def changed(what: str) -> None:  # another process wrote promotions / experiments
        if what == PROMOTIONS:
            reader.promotions.invalidate()
        elif what == EXPERIMENTS and reader.experiments is not None:
            reader.experiments.defs.invalidate()

    keys = RedisKeys()
    cache = NearCache(settings.serve_cache_entries, keys, on_change=changed, metrics=metrics)
    tracker = Tracker(conn, cache, redis, keys)
    if not await tracker.start():
        conn.on_open = None
        return None
    reader.near = cache
    return tracker
