"""One persistent, pipelined Redis connection for the serving path's round trips.

A recommendation request is one round trip on one Redis (:mod:`api.reader`). Through
redis-py each command checks a connection out of the pool, goes through the retry
wrapper, packs the command, writes it with its own ``send`` and parses the reply: py-spy
put that at ~15 % of the API process under load. Here all calls share one connection:
each batch (one request's round trip) is written at once, in one ``send``, replies are
parsed by hiredis and handed to the waiting callers in order.

Each batch goes out as soon as it is made, not gathered until the end of the event
loop's turn. Gathering them (as this module did until 2026-12-04) saved ``send`` calls
but made the requests in flight move as one convoy: Redis ran the whole gathered
pipeline while the API waited, then the API answered all of it while Redis waited, so
closed-loop throughput followed the *sum* of their CPU per request. Written at once,
Redis starts on a request while the API prepares the next: the merchandising mix served
~40 % more requests per second at 32 connections, the home mix about as many (its Redis
work per request is smaller), for the same CPU per request (docs/benchmarks.md).

One Redis only: a Redis Cluster goes through redis-py's
cluster client.

Failures look like redis-py's to the caller (``redis.exceptions.ConnectionError`` /
``ResponseError``): a lost connection, or one whose oldest call waited longer than
``REPLY_TIMEOUT_S``, fails every call in flight and is reopened by the next call. Only
plain ``redis://host:port/db`` URLs (with optional user and password) use it;
:func:`supports` says so, and the reader keeps redis-py for TLS and unix sockets.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import hiredis
from redis.asyncio import Redis
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from core.redis_client import Call, async_client
from core.settings import Settings

#: Seconds to open the connection, and to wait for one reply (redis-py's settings of the
#: API pool: short, so an outage turns into the fallback snapshot quickly).
CONNECT_TIMEOUT_S = 0.5
REPLY_TIMEOUT_S = 1.0


def connect_redis(settings: Settings) -> Redis:
    """The API's Redis pool (a cluster client on a Redis Cluster): the serving path's
    short timeouts (not the worker's ``STREAMREC_REDIS_TIMEOUT_S``) and one quick retry,
    so an outage, or a Redis that stopped answering, fails fast: the fallback snapshot
    for lists, a 503 with ``Retry-After`` for what has none."""
    return async_client(  # type: ignore[no-any-return]
        settings,
        decode_responses=True,
        encoding_errors="replace",
        socket_timeout=REPLY_TIMEOUT_S,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), 1),
        health_check_interval=30,
    )


def supports(url: str) -> bool:
    """True when ``url`` is a plain TCP Redis URL this connection can open."""
    return url.startswith("redis://") and "path" not in parse_url(url)


def pack(*args: Any) -> bytes:
    """A command in RESP: an array of bulk strings (numbers as their text)."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, bytes):
            data = arg
        elif isinstance(arg, str):
            data = arg.encode()
        else:
            data = str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _Protocol(asyncio.Protocol):
    """Replies matched to waiters in order; a lost connection fails them all."""

    def __init__(self, on_lost: Callable[[Any], None] = lambda proto: None) -> None:
        self.on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self.reader = hiredis.Reader(encoding="utf-8", errors="replace")
        self.waiters: deque[asyncio.Future[Any]] = deque()
        self.sent_at: deque[float] = deque()  # loop time of each waiter's command
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._watch()

    def _watch(self) -> None:
        """Fail the connection when the oldest call waited longer than REPLY_TIMEOUT_S.

        One timer per connection instead of one per call (a timer per request showed up
        in the profile); replies come in order, so the oldest call is the one to check.
        """
        if self.closed:
            return
        loop = asyncio.get_running_loop()
        if self.sent_at and loop.time() - self.sent_at[0] > REPLY_TIMEOUT_S:
            self.fail(RedisConnectionError("Redis did not answer in time"))
            return
        loop.call_later(REPLY_TIMEOUT_S / 4, self._watch)

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            reply = self.reader.gets()
            if reply is False:
                return
            if not self.waiters:  # a reply nobody asked for: the stream is out of step
                self.fail(RedisConnectionError("unexpected reply from Redis"))
                return
            waiter = self.waiters.popleft()
            self.sent_at.popleft()
            if waiter.done():  # its caller gave up (cancelled); the order still holds
                continue
            if isinstance(reply, hiredis.ReplyError):
                waiter.set_exception(ResponseError(str(reply)))
            else:
                waiter.set_result(reply)

    def eof_received(self) -> bool | None:
        # Redis closed it: the next call opens another, and the near cache hears of it
        # now (connection_lost comes a turn of the loop later)
        self.closed = True
        self.on_lost(self)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.on_lost(self)
        self._fail_waiters(RedisConnectionError(f"connection to Redis lost: {exc!r}"))

    def _fail_waiters(self, exc: Exception) -> None:
        self.sent_at.clear()
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(exc)

    def fail(self, exc: Exception) -> None:
        """Close the connection and fail every call in flight with ``exc``."""
        self.closed = True
        self.on_lost(self)
        self._fail_waiters(exc)
        if self.transport is not None:
            self.transport.close()

    def call_all(self, commands: Sequence[bytes]) -> list[asyncio.Future[Any]]:
        """Write ``commands`` now, in one go; a future per command gets its reply."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        waiters: list[asyncio.Future[Any]] = []
        for _ in commands:
            waiter: asyncio.Future[Any] = loop.create_future()
            waiters.append(waiter)
            self.waiters.append(waiter)
            self.sent_at.append(now)
        if self.transport is None or self.closed:
            self._fail_waiters(RedisConnectionError("connection to Redis closed"))
        else:
            self.transport.write(commands[0] if len(commands) == 1 else b"".join(commands))
        return waiters

    def call(self, command: bytes) -> asyncio.Future[Any]:
        """Write ``command`` now; the future gets its reply."""
        return self.call_all([command])[0]


class ScriptConnection:
    """Runs batches of commands and scripts (``EVALSHA``, ``EVAL`` after a ``NOSCRIPT``)
    on one connection.

    ``on_open(protocol)`` runs on each new connection before any batch (the near cache
    turns Redis's tracking on there: ``api.tracking_conn``; it must not raise);
    ``on_lost(protocol)`` when one is lost."""

    def __init__(self, url: str) -> None:
        self._opts = parse_url(url)
        self._proto: _Protocol | None = None
        self._opening: asyncio.Lock | None = None
        self.on_open: Callable[[Any], Awaitable[None]] | None = None
        self.on_lost: Callable[[Any], None] = lambda proto: None

    async def _connection(self) -> _Protocol:
        proto = self._proto
        if proto is not None and not proto.closed:
            return proto
        if self._opening is None:
            self._opening = asyncio.Lock()
        async with self._opening:
            proto = self._proto
            if proto is not None and not proto.closed:
                return proto
            self._proto = proto = await self._open()
            return proto

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        opts = self._opts
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            _, proto = await loop.create_connection(
                lambda: _Protocol(lambda proto: self.on_lost(proto)), opts.get("host", "localhost"),
                opts.get("port", 6379))
            try:
                if opts.get("password"):
                    auth = [opts["username"]] if opts.get("username") else []
                    await proto.call(pack("AUTH", *auth, opts["password"]))
                if opts.get("db"):
                    await proto.call(pack("SELECT", str(opts["db"])))
                if self.on_open is not None:
                    await self.on_open(proto)
            except BaseException:
                proto.fail(RedisConnectionError("Redis refused the connection setup"))
                raise
        return proto

    @property
    def protocol(self) -> Any:
        """The open connection's protocol, or None."""
        proto = self._proto
        return proto if proto is not None and not proto.closed else None

    @property
    def opts(self) -> dict[str, Any]:
        """The parsed URL (host, port, db, username, password)."""
        return dict(self._opts)

    async def send(self, command: bytes) -> Any:
        """One packed command's reply."""
        return await self._send(command)

    async def _send(self, command: bytes) -> Any:
        proto = await self._connection()
        return await proto.call(command)

    async def batch(self, calls: Sequence[Call]) -> list[Any]:
        """The replies of ``calls``, all written at once (a script the server lost is
        sent again by ``EVAL``, where it failed); the first error is raised."""
        proto = await self._connection()
        waiters = proto.call_all([pack(*call.args) for call in calls])
        replies: list[Any] = []
        for waiter in waiters:  # replies come in order: the last one ends the wait
            try:
                replies.append(await waiter)
            except (ResponseError, RedisConnectionError) as exc:
                replies.append(exc)
        for i, reply in enumerate(replies):
            script = calls[i].script
            if (isinstance(reply, ResponseError) and str(reply).startswith("NOSCRIPT")
                    and script is not None):
                try:
                    replies[i] = await self._send(pack("EVAL", script.source,
                                                        *calls[i].args[2:]))
                except ResponseError as exc:
                    replies[i] = exc
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
        return replies

    def close(self) -> None:
        """Close the connection (calls in flight fail)."""
        if self._proto is not None:
            self._proto.fail(RedisConnectionError("connection closed"))
            self._proto = None
