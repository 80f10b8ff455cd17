"""Leased rate-limit tokens (api.rate_lease) on a real Redis (and a Redis Cluster): the
lease script, one process's exactness, and several processes sharing one limit."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from api.errors import RateLimited
from api.list_query import RateCheck
from api.rate_lease import RateLeases
from api.serve_script import RATE_LEASE, RATE_LIMIT
from core.redis_client import Lua, async_client, run_batch, sync_client
from core.redis_keys import RedisKeys
from core.settings import Settings
from tests.integration.api.app_client import running

pytestmark = pytest.mark.integration

K = RedisKeys()
READ = "read-1-0123456789ab"


def test_a_lease_charges_what_fits_then_refuses_like_one_request(either_redis: Settings
                                                                  ) -> None:
    r = sync_client(either_redis, decode_responses=True)
    try:
        lease, one = r.register_script(RATE_LEASE), r.register_script(RATE_LIMIT)
        leased, single = K.rate_limit("read", "leased"), K.rate_limit("read", "single")
        args = ["100.0", "20"]  # a request per 100 s, a burst of 20
        assert [int(lease(keys=[leased], args=[*args, "8"])[0]) for _ in range(4)] == [
            8, 8, 4, 0]  # what fits, then nothing
        for _ in range(20):
            assert float(one(keys=[single], args=args)) == 0
        refused_one = float(one(keys=[single], args=args))
        charged, wait = lease(keys=[leased], args=[*args, "8"])
        assert int(charged) == 0 and abs(float(wait) - refused_one) < 1.0
        assert 99 < float(wait) <= 100
    finally:
        r.close()


async def _count_admitted(leases: RateLeases, check: RateCheck, tries: int) -> int:
    admitted = 0
    for _ in range(tries):
        try:
            await leases.admit(check)
            admitted += 1
        except RateLimited as exc:
            assert exc.retry_after_s >= 1
    return admitted


async def test_one_process_admits_exactly_the_burst_with_fewer_calls(either_redis: Settings
                                                                     ) -> None:
    client = async_client(either_redis, decode_responses=True)
    calls = []

    async def batch(batch_calls: list[Any]) -> list[Any]:
        calls.append(len(batch_calls))
        return await run_batch(client, batch_calls)

    try:
        # a clock that stands still: no lease expires, so nothing is lost
        leases = RateLeases(batch, timeout_s=5.0, clock=lambda: 1.0)
        check = RateCheck(K.rate_limit("read", "exact"), 100.0, 40.0)  # leases up to 5
        assert await _count_admitted(leases, check, 60) == 40
        assert len(calls) < 40 + 20  # the burst took fewer calls than requests
        with pytest.raises(RateLimited) as refused:
            await leases.admit(check)
        single = Lua(RATE_LIMIT)
        other = K.rate_limit("read", "exact-single")
        for _ in range(40):
            await run_batch(client, [single.call([other], ["100.0", "40.0"])])
        wait = float((await run_batch(client, [single.call([other], ["100.0", "40.0"])]))[0])
        assert refused.value.retry_after_s == RateLimited(wait).retry_after_s
    finally:
        await client.aclose()


async def test_two_processes_together_admit_at_most_the_limit(either_redis: Settings) -> None:
    client = async_client(either_redis, decode_responses=True)
    try:
        a, b = (RateLeases(lambda c: run_batch(client, c), timeout_s=5.0, clock=lambda: 1.0)
                for _ in range(2))
        check = RateCheck(K.rate_limit("read", "shared"), 100.0, 64.0)  # leases up to 8
        admitted = await asyncio.gather(*(_count_admitted(leases, check, 25)
                                          for leases in (a, b, a, b, a, b)))
        # tokens still held by one are never spent by the other: at most the burst, and
        # (no lease expired) the burst exactly once both have spent what they hold
        assert sum(admitted) <= 64
        rest = sum([await _count_admitted(leases, check, 10) for leases in (a, b)])
        assert sum(admitted) + rest == 64
    finally:
        await client.aclose()


async def test_two_apps_on_one_redis_never_admit_more_than_the_limit(either_redis: Settings
                                                                     ) -> None:
    per_s = 64.0  # a burst of 64, leases of up to 8
    limited = either_redis.model_copy(update={"read_keys": READ, "rate_limit_read_per_s": per_s})
    statuses: list[int] = []

    async def hammer(client: httpx.AsyncClient, url: str) -> None:
        for _ in range(40):
            resp = await client.get(url, headers={"X-API-Key": READ})
            statuses.append(resp.status_code)

    async with running(limited, wait_ready=False) as one, \
            running(limited, wait_ready=False) as two:
        started = time.monotonic()
        await asyncio.gather(*(hammer(client, url) for client in (one, two, one, two)
                               for url in ("/v1/popular", "/v1/users/u1/recommendations")))
        elapsed = time.monotonic() - started
    assert set(statuses) <= {200, 429}
    # GCRA: what is charged in a window of T seconds is at most the burst plus T x rate;
    # a leased token is charged before its request is admitted
    assert statuses.count(200) <= per_s + elapsed * per_s + 1


async def test_a_list_takes_its_lease_in_its_own_round_trip(either_redis: Settings) -> None:
    """``SERVE_ONE`` on one Redis, the first round trip on a Redis Cluster: the lease's
    answer refuses exactly as the single check did (one request per 100 s)."""
    slow = either_redis.model_copy(update={"read_keys": READ, "rate_limit_read_per_s": 0.01})
    async with running(slow, wait_ready=False) as client:
        headers = {"X-API-Key": READ}
        first = await client.get("/v1/users/u1/recommendations", headers=headers)
        assert first.status_code == 200 and first.json()["source"] != "fallback"
        refused = await client.get("/v1/users/u1/recommendations", headers=headers)
        assert refused.status_code == 429
        assert 99 <= int(refused.headers["Retry-After"]) <= 100
