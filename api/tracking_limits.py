"""Rate limits of tracking writes, per client and counting events.

The tracking key ships in every web page, so a limit per key alone lets one abuser spend
the budget every shopper of the shop shares. ``POST /v1/events`` and ``POST /v1/identify``
are therefore charged, in events, against up to three kinds of bucket at once:

* the API key (``STREAMREC_RATE_LIMIT_TRACKING_PER_S``; burst one second's worth),
* the source address (``..._ADDRESS_PER_S`` / ``..._ADDRESS_BURST``; IPv6 per /64, since
  one host gets a whole /64),
* each user or anonymous id the request names (``..._ENTITY_PER_S`` / ``..._ENTITY_BURST``).

All buckets of a request are checked and charged in one Lua call
(:data:`api.serve_script.RATE_LIMIT_EVENTS`, GCRA on the Redis clock): when any refuses,
none is charged and the answer is 429 with ``Retry-After``. Requests made with an admin
key (operators' backfills) or from a loopback address without ``X-Forwarded-For`` (this
machine's own tools: ``load``, ``simulate``, ``bench``) skip the address and id buckets;
behind a reverse proxy, let it pass the client address (``STREAMREC_API_FORWARDED_ALLOW_IPS``)
and *replace* any ``X-Forwarded-For`` the client sent (with ``*`` uvicorn takes the
header's first entry). Bucket keys hold digests of addresses and ids, never the raw
values, and expire once drained.

When Redis cannot count (down, timing out), tracking writes **fail closed**: 503 with
``Retry-After`` — an outage must not switch the limits off. Nothing was produced then, so
the client retries.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from api.auth import is_loopback
from api.errors import RateLimited, ServiceUnavailable
from api.metrics import Metrics
from api.serve_script import RATE_LIMIT_EVENTS
from core.redis_keys import RedisKeys
from core.settings import Settings

log = logging.getLogger("streamrec.api")

#: Budget for the limiter's Redis call before failing closed.
TIMEOUT_S = 2.0
#: What a fail-closed 503 asks the client to wait.
RETRY_AFTER_S = 2


@dataclass(frozen=True)
class Client:
    """Who sends a tracking write: the API key's id (None with auth off), whether it is
    an admin key, and the source address (``request.client.host``)."""

    key_id: str | None
    admin: bool = False
    address: str | None = None
    #: The request carried ``X-Forwarded-For``: ``address`` may come from it (a proxy's
    #: word, or the client's own when the proxy passes its header on).
    forwarded: bool = False

    @property
    def local(self) -> bool:
        """A tool of this machine: the connection itself came from a loopback address.
        A forwarded address never is: ``X-Forwarded-For: 127.0.0.1`` (or ``::1``,
        ``localhost``) from a shopper that a proxy passes on, or that the API trusts,
        would otherwise skip the address and id limits."""
        return (not self.forwarded and self.address is not None
                and is_loopback(self.address))

    @property
    def scope(self) -> str:
        """The namespace of this client's idempotency keys."""
        return self.key_id or "open"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", errors="surrogatepass")).hexdigest()[:16]


def address_bucket(host: str) -> str:
    """The rate-limit identity of a source address: the address itself for IPv4, its /64
    network for IPv6 (a host controls a whole /64), the text for anything else."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if ip.version == 6 and ip.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip.ipv4_mapped or ip) if ip.version == 6 else str(ip)


class TrackingLimiter:
    """Charges tracking writes against the key, address and id buckets (see module)."""

    def __init__(self, redis: Redis, settings: Settings, metrics: Metrics,
                 keys: RedisKeys | None = None) -> None:
        self._keys = keys or RedisKeys()
        self._settings = settings
        self._metrics = metrics
        self._script = redis.register_script(RATE_LIMIT_EVENTS)

    def buckets(self, client: Client, entity_costs: Mapping[str, int], events: int
                ) -> list[tuple[str, str, float, float, int]]:
        """``(scope, key, interval_s, burst, cost)`` of every bucket this write is charged
        against (empty when every limit is off)."""
        s, k = self._settings, self._keys
        out: list[tuple[str, str, float, float, int]] = []
        if client.key_id is not None and s.rate_limit_tracking_per_s > 0:
            per_s = s.rate_limit_tracking_per_s
            out.append(("key", k.rate_limit("tracking", client.key_id), 1.0 / per_s,
                        max(1.0, per_s), events))
        if client.admin or client.local:
            return out
        if client.address and s.rate_limit_address_per_s > 0:
            out.append(("address", k.rate_limit("addr", _digest(address_bucket(client.address))),
                        1.0 / s.rate_limit_address_per_s, s.rate_limit_address_burst, events))
        if s.rate_limit_entity_per_s > 0:
            interval = 1.0 / s.rate_limit_entity_per_s
            for entity, cost in entity_costs.items():
                out.append(("id", k.rate_limit("ent", _digest(entity)), interval,
                            s.rate_limit_entity_burst, int(cost)))
        return out

    async def admit(self, client: Client, entity_costs: Mapping[str, int],
                    events: int | None = None) -> None:
        """Charge a write of ``events`` events (default: the sum of ``entity_costs``,
        events per user/anonymous id). Raises ``RateLimited`` (429) when a bucket is over
        its limit and ``ServiceUnavailable`` (503) when Redis cannot count."""
        total = sum(entity_costs.values()) if events is None else events
        buckets = self.buckets(client, entity_costs, total)
        if not buckets:
            return
        spec = orjson.dumps([[interval, burst, cost] for _, _, interval, burst, cost in buckets])
        try:
            async with asyncio.timeout(TIMEOUT_S):
                wait_text, index = await self._script(keys=[b[1] for b in buckets], args=[spec])
        except (RedisError, OSError, TimeoutError) as exc:
            self._metrics.rate_limit_unavailable.inc()
            log.warning("tracking rate limits cannot be counted (%r): refusing writes", exc)
            raise ServiceUnavailable(
                "the rate limiter cannot count events now (Redis unavailable); nothing was "
                "accepted, retry later", retry_after_s=RETRY_AFTER_S) from exc
        wait = float(wait_text)
        if wait > 0:
            scope = buckets[int(index) - 1][0]
            self._metrics.rate_limited_events.labels(scope).inc(total)
            raise RateLimited(wait, subject={"key": "this API key",
                                             "address": "this source address",
                                             "id": "one of these user/anonymous ids"}[scope])
