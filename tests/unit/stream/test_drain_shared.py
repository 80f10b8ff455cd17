"""EventProcessor.drain with overlapping callers (the next batch's first step and the
batch loop's finisher): the write in flight is sent once, its counts reported once, and
a failed write is sent again once. Pure: the write is a coroutine of this test, no Redis."""

from __future__ import annotations

import asyncio
from typing import Any

from stream.list_writes import Written
from stream.processor import EventProcessor


def _processor() -> Any:
    """An EventProcessor with nothing but its write in flight (drain reads no more)."""
    proc = EventProcessor.__new__(EventProcessor)
    proc._inflight = None
    return proc


def test_two_overlapping_drains_share_one_write_and_one_count() -> None:
    async def run() -> tuple[list[int], int, Any]:
        proc = _processor()
        gate = asyncio.Event()
        sent = 0

        async def write() -> Written:
            nonlocal sent
            sent += 1
            await gate.wait()
            return Written(7, listed_at=1.25)

        proc._inflight = (asyncio.ensure_future(write()), write, ([1.0], []))
        first = asyncio.ensure_future(proc.drain())
        second = asyncio.ensure_future(proc.drain())
        await asyncio.sleep(0)
        gate.set()
        results = await asyncio.gather(first, second)
        return [(r.applied, r.freshness_s) for r in results], sent, proc._inflight

    applied, sent, left = asyncio.run(run())
    # counted by whichever saw it land first; its freshness up to when Redis wrote the
    # lists (received at 1.0, listed at 1.25 by Redis's clock), not when drain resumed
    assert sorted(applied) == [(0, []), (7, [0.25])]
    assert sent == 1 and left is None


def test_a_late_drain_leaves_the_next_write_alone() -> None:
    async def run() -> tuple[int, int, bool, int]:
        proc = _processor()

        async def old() -> Written:
            await asyncio.sleep(0)
            return Written(3)

        async def new() -> Written:
            return Written(5)

        newer: Any = (asyncio.ensure_future(new()), new, ([], []))

        async def next_step() -> int:  # EventProcessor._submit: drain, then send its own
            applied = (await proc.drain()).applied
            proc._inflight = newer
            return applied

        proc._inflight = (asyncio.ensure_future(old()), old, ([], []))
        stepped = asyncio.ensure_future(next_step())
        late = asyncio.ensure_future(proc.drain())  # the finisher, resumed after it
        took, left = await stepped, (await late).applied
        kept = proc._inflight is newer
        return took, left, kept, (await proc.drain()).applied

    took, left, kept, after = asyncio.run(run())
    assert (took, left, kept, after) == (3, 0, True, 5)


def test_a_failed_write_is_sent_again_once_whoever_retries() -> None:
    async def run() -> int:
        proc = _processor()
        attempts = 0

        async def write() -> Written:
            nonlocal attempts
            attempts += 1
            await asyncio.sleep(0)
            if attempts == 1:
                raise ConnectionError("Redis went away")
            return Written(2)

        proc._inflight = (asyncio.ensure_future(write()), write, ([], []))
        outcomes = await asyncio.gather(proc.drain(), proc.drain(), return_exceptions=True)
        assert all(isinstance(o, ConnectionError) for o in outcomes)
        again = await asyncio.gather(proc.drain(), proc.drain())
        assert sorted(r.applied for r in again) == [0, 2]
        return attempts

    assert asyncio.run(run()) == 2
