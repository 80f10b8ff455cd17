"""The arithmetic of leased rate-limit tokens (api.rate_lease), on a fake clock."""

from __future__ import annotations

from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from api.errors import RateLimited
from api.list_query import RateCheck
from api.rate_lease import Ask, LeaseBook, RateLeases, lease_size
from core.limits import RATE_LEASE_MAX, RATE_LEASE_S, RATE_LEASE_WINDOW_S

BUSY = RateCheck("rl:busy", 0.001, 1000.0)  # 1,000 requests/s: leases up to 64 (cap)
SMALL = RateCheck("rl:small", 0.1, 10.0)  # 10 requests/s: never more than one


def burst_of(book: LeaseBook, check: RateCheck, count: int, now: float) -> list[Ask | None]:
    """``count`` requests at ``now``, each question answered in full at once."""
    out = []
    for _ in range(count):
        ask = book.ask(check, now)
        if ask is not None:
            ask.granted = ask.size
            book.settle(ask)
        out.append(ask)
    return out


def test_the_size_is_one_at_low_rates_and_capped_by_the_burst_and_the_hard_cap() -> None:
    assert lease_size(1000.0, 0) == lease_size(1000.0, 1) == 1
    assert lease_size(1000.0, 20) == 20
    assert lease_size(1000.0, 10_000) == RATE_LEASE_MAX
    assert lease_size(80.0, 10_000) == 10  # an eighth of the burst
    assert lease_size(15.0, 10_000) == 1  # below 16 requests/s: one request per check


def test_a_low_limit_asks_redis_for_every_request() -> None:
    book = LeaseBook()
    asks = burst_of(book, SMALL, 30, now=5.0)
    assert all(ask is not None and ask.size == 1 for ask in asks)


def test_the_lease_grows_with_the_requests_seen_and_is_spent_locally() -> None:
    book = LeaseBook()
    asks = burst_of(book, BUSY, 200, now=1.0)
    sizes = [ask.size for ask in asks if ask is not None]
    # 1, 2 (requests seen so far), then 4, 8, ...: each lease covers the requests until
    # the next; every request is charged exactly once
    assert sizes[:4] == [1, 2, 4, 8]
    assert sum(sizes) >= 200 and sum(sizes[:-1]) < 200
    assert max(sizes) == RATE_LEASE_MAX
    assert sum(ask is None for ask in asks) == 200 - len(sizes)


def test_a_partial_grant_holds_only_what_was_granted() -> None:
    book = LeaseBook()
    burst_of(book, BUSY, 10, now=1.0)  # seen 10: the next lease asks for more than 3
    while (ask := book.ask(BUSY, 1.0)) is None:
        pass
    assert ask.size > 3
    ask.granted = 3  # Redis had room for three
    book.settle(ask)
    assert [book.ask(BUSY, 1.0) for _ in range(2)] == [None, None]
    assert book.ask(BUSY, 1.0) is not None


def test_a_refused_lease_holds_nothing_and_asks_again() -> None:
    book = LeaseBook()
    burst_of(book, BUSY, 10, now=1.0)
    while (ask := book.ask(BUSY, 1.0)) is None:
        pass
    book.settle(ask)  # refused (or Redis failed): granted stays 0
    again = book.ask(BUSY, 1.0)
    assert again is not None and again.size > 1  # no lease on its way any more


def test_unspent_tokens_expire() -> None:
    book = LeaseBook()
    burst_of(book, BUSY, 10, now=1.0)
    while (ask := book.ask(BUSY, 1.0)) is None:
        pass
    ask.granted = ask.size
    book.settle(ask)
    assert book.ask(BUSY, 1.0 + RATE_LEASE_S / 2) is None  # held
    late = book.ask(BUSY, 1.0 + RATE_LEASE_S)  # the rest is dropped
    assert late is not None


def test_while_a_lease_is_on_its_way_other_requests_ask_for_one() -> None:
    book = LeaseBook()
    burst_of(book, BUSY, 10, now=1.0)
    while (first := book.ask(BUSY, 1.0)) is None:
        pass
    assert first.size > 1
    second = book.ask(BUSY, 1.0)
    assert second is not None and second.size == 1
    second.granted = 1
    book.settle(second)
    first.granted = first.size
    book.settle(first)
    assert book.ask(BUSY, 1.0) is None  # the lease arrived: held tokens
    # a lease never answered (its task cancelled) stops blocking after RATE_LEASE_S
    book2 = LeaseBook()
    burst_of(book2, BUSY, 10, now=1.0)
    while (lost := book2.ask(BUSY, 1.0)) is None:
        pass
    assert lost.size > 1
    sizes = []
    for step in range(1, 12):  # a request every 10 ms, each answered with one
        ask = book2.ask(BUSY, 1.0 + step * RATE_LEASE_S / 10)
        assert ask is not None
        ask.granted = 1
        book2.settle(ask)
        sizes.append(ask.size)
    assert sizes[:9] == [1] * 9 and sizes[-1] > 1


def test_an_idle_key_starts_again_at_one() -> None:
    book = LeaseBook()
    burst_of(book, BUSY, 100, now=1.0)
    quiet = 1.0 + 3 * RATE_LEASE_WINDOW_S + RATE_LEASE_S
    ask = book.ask(BUSY, quiet)
    assert ask is not None and ask.size == 1


def test_the_leases_kept_are_bounded() -> None:
    book = LeaseBook(max_keys=3)
    for i in range(10):
        burst_of(book, RateCheck(f"rl:{i}", 0.001, 1000.0), 5, now=1.0)
    assert len(book) == 3


class FakeRedis:
    """``RATE_LEASE``'s replies in order, or an error; the calls made."""

    def __init__(self, *replies: Any) -> None:
        self.replies = list(replies)
        self.calls = 0

    async def batch(self, calls: list[Any]) -> list[Any]:
        self.calls += 1
        reply = self.replies.pop(0)
        if isinstance(reply, Exception):
            raise reply
        return [reply]


async def test_admit_refuses_with_the_wait_of_one_request_and_allows_when_redis_fails(
        ) -> None:
    redis = FakeRedis([0, "2.5"], RedisConnectionError("down"), [1, "0"])
    leases = RateLeases(redis.batch, timeout_s=1.0, clock=lambda: 1.0)
    with pytest.raises(RateLimited) as refused:
        await leases.admit(SMALL)
    assert refused.value.retry_after_s == 3
    await leases.admit(SMALL)  # Redis cannot tell: admitted, as without leases
    await leases.admit(SMALL)
    assert redis.calls == 3


async def test_admit_spends_held_tokens_without_a_call() -> None:
    redis = FakeRedis(*([[1, "0"], [2, "0"], [4, "0"]]))
    leases = RateLeases(redis.batch, timeout_s=1.0, clock=lambda: 1.0)
    for _ in range(7):
        await leases.admit(BUSY)
    assert redis.calls == 3  # 1 + 2 + 4 requests
