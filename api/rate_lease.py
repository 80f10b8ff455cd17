"""Leased rate-limit tokens: most requests of a busy key need no Redis call for its limit.

Each key's limit is one GCRA bucket in Redis (``api/lua/gcra.lua``), shared by every API
process. Instead of charging one request per call, a process charges a *lease* of up to
``k`` requests at once and admits the next requests of that key from it, locally:

- A request first spends a held token of its key (no Redis call). With none held (or
  the lease expired) it asks Redis for a lease of ``k``: inside the serve script's round
  trip when it serves a list (``SERVE_ONE`` on one Redis; the ``RATE_LEASE`` call beside
  the first reads on a Redis Cluster), else one ``RATE_LEASE`` call
  (:meth:`RateLeases.admit`). Redis charges all ``k`` when they fit, else as many as fit
  now, at least one; only when not even one fits is the request refused (429) with the
  wait of a single request, the same ``Retry-After`` as charging one request at a time.
  The request itself spends one of the tokens, the process keeps the rest.
- ``k`` is 1 at low rates and follows the requests the process saw for the key in the
  last ``RATE_LEASE_WINDOW_S``, at most ``RATE_LEASE_BURST_SHARE`` of the burst and
  ``RATE_LEASE_MAX`` (``core.limits``, with their reasons): a limit below 16 requests/s
  is checked one request at a time, as without leases. While a lease of more than one is
  on its way, the key's other requests ask for one each.
- Leased tokens count as spent in Redis, so the processes together never admit more
  than the limit; a held token admits a request at most ``RATE_LEASE_S`` after its lease
  was asked for, then the rest of the lease is dropped (lost: bounded under-admission,
  at most one lease per process and key). One process alone admits exactly what charging
  every request would (the burst, then the steady rate), except the tokens a lease loses
  when the key's requests pause for longer than ``RATE_LEASE_S``.
- Leases are remembered for at most ``RATE_LEASE_KEYS_MAX`` keys per process, least
  recently used dropped first (its tokens are lost, never admitted twice).
- Redis errors while taking a lease behave as the rate check without leases: a lone
  check (:meth:`RateLeases.admit`) admits the request (the limit is off while Redis is
  down); inside a list's round trip the error is the list's, which the fallback snapshot
  answers.

:class:`LeaseBook` is the arithmetic, with the clock passed in (unit-tested with a fake
clock); :class:`RateLeases` adds the Redis call and the clock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError

from api.errors import RateLimited
from api.list_query import RateCheck
from api.serve_script import RATE_LEASE
from core.limits import (
    RATE_LEASE_BURST_SHARE,
    RATE_LEASE_KEYS_MAX,
    RATE_LEASE_MAX,
    RATE_LEASE_S,
    RATE_LEASE_WINDOW_S,
)
from core.redis_client import Call, Lua

log = logging.getLogger("streamrec.api")

LEASE_LUA = Lua(RATE_LEASE)


def lease_size(burst: float, seen: int) -> int:
    """How many requests to lease for a key of ``burst`` that saw ``seen`` requests in the
    last window: at least 1, at most a share of the burst and the hard cap."""
    return max(1, min(seen, RATE_LEASE_MAX, int(burst * RATE_LEASE_BURST_SHARE)))


class _Lease:
    """One key's held tokens and its recent request count."""

    __slots__ = ("tokens", "expires", "window_at", "seen", "last_seen", "asked_at")

    def __init__(self) -> None:
        self.tokens = 0
        self.expires = 0.0
        self.window_at = float("-inf")
        self.seen = 0  # requests since window_at
        self.last_seen = 0  # requests of the window before
        self.asked_at: float | None = None  # a lease of more than one on its way since


class Ask:
    """One request's question to Redis: charge ``size`` requests of ``check``'s bucket;
    ``granted`` is Redis's answer (0: refused, or not answered)."""

    __slots__ = ("check", "size", "at", "granted")

    def __init__(self, check: RateCheck, size: int, at: float) -> None:
        self.check, self.size, self.at, self.granted = check, size, at, 0

    @property
    def call(self) -> Call:
        """The ``RATE_LEASE`` call of this question (its own round trip, or the first of
        a list's on a Redis Cluster)."""
        c = self.check
        return LEASE_LUA.call([c.key], [repr(c.interval_s), repr(c.burst), str(self.size)])

    def answer(self, reply: Any) -> None:
        """Take ``RATE_LEASE``'s reply ``[granted, wait_s]``; raise ``RateLimited`` with
        the wait when nothing was granted."""
        self.granted = int(reply[0])
        if self.granted <= 0:
            raise RateLimited(float(reply[1]))


class LeaseBook:
    """The leases of one process, keyed by rate-limit state key (pure: ``now`` is passed
    in)."""

    def __init__(self, max_keys: int = RATE_LEASE_KEYS_MAX) -> None:
        self._leases: OrderedDict[str, _Lease] = OrderedDict()
        self._max_keys = max_keys

    def __len__(self) -> int:
        return len(self._leases)

    def _lease(self, key: str) -> _Lease:
        lease = self._leases.get(key)
        if lease is None:
            lease = self._leases[key] = _Lease()
            if len(self._leases) > self._max_keys:
                self._leases.popitem(last=False)
        else:
            self._leases.move_to_end(key)
        return lease

    def ask(self, check: RateCheck, now: float) -> Ask | None:
        """None when a held token admits this request (spent now); else the question to
        put to Redis for it (the lease size, 1 while a larger lease is on its way)."""
        lease = self._lease(check.key)
        if now - lease.window_at >= RATE_LEASE_WINDOW_S:
            recent = now - lease.window_at < 2 * RATE_LEASE_WINDOW_S
            lease.last_seen = lease.seen if recent else 0
            lease.window_at, lease.seen = now, 0
        lease.seen += 1
        if lease.tokens > 0 and now < lease.expires:
            lease.tokens -= 1
            return None
        lease.tokens = 0
        if lease.asked_at is not None and now - lease.asked_at < RATE_LEASE_S:
            return Ask(check, 1, now)
        size = lease_size(check.burst, max(lease.seen, lease.last_seen))
        lease.asked_at = now if size > 1 else None
        return Ask(check, size, now)

    def settle(self, ask: Ask) -> None:
        """Record Redis's answer to ``ask`` (after a refusal or an error too): the tokens
        granted beyond the asking request's own are held until ``RATE_LEASE_S`` after the
        question."""
        lease = self._lease(ask.check.key)
        if ask.size > 1:
            lease.asked_at = None
        if ask.granted > 1:
            lease.tokens = ask.granted - 1
            lease.expires = ask.at + RATE_LEASE_S


class RateLeases:
    """:class:`LeaseBook` with the process's clock and the Redis call of a lone check."""

    def __init__(self, batch: Callable[[list[Call]], Awaitable[list[Any]]], *,
                 timeout_s: float, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = RATE_LEASE_KEYS_MAX) -> None:
        self.book = LeaseBook(max_keys)
        self._batch = batch
        self._timeout_s = timeout_s
        self._clock = clock

    def ask(self, check: RateCheck) -> Ask | None:
        """:meth:`LeaseBook.ask` now: None when admitted by a held token."""
        return self.book.ask(check, self._clock())

    def settle(self, ask: Ask) -> None:
        """:meth:`LeaseBook.settle`: call once per :meth:`ask` that was not None."""
        self.book.settle(ask)

    async def admit(self, check: RateCheck) -> None:
        """Admit one request of ``check``'s key, from a held token or a lease taken now
        (one Redis call); raise ``RateLimited`` when over the limit; admit when Redis
        cannot tell (as the rate check without leases)."""
        ask = self.ask(check)
        if ask is None:
            return
        try:
            async with asyncio.timeout(self._timeout_s):
                reply = (await self._batch([ask.call]))[0]
            ask.answer(reply)
        except (RedisError, OSError, TimeoutError, ValueError) as exc:
            log.debug("rate limit not checked: %r", exc)
        finally:
            self.settle(ask)
