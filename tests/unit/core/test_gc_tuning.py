"""The worker's collector thresholds: rarer young collections while it is behind, the
usual ones as soon as it is not (core.gc_tuning.backlog_gc)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from core.gc_tuning import BACKLOG_THRESHOLDS, THRESHOLDS, backlog_gc, step_gc


@pytest.fixture(autouse=True)
def _restore_thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def test_a_backlog_makes_young_collections_rarer_and_catching_up_restores_them() -> None:
    assert BACKLOG_THRESHOLDS[0] > THRESHOLDS[0]
    backlog_gc(True)
    assert gc.get_threshold() == BACKLOG_THRESHOLDS
    backlog_gc(True)
    assert gc.get_threshold() == BACKLOG_THRESHOLDS
    backlog_gc(False)
    assert gc.get_threshold() == THRESHOLDS


def test_a_step_while_behind_runs_without_the_collector_and_gives_it_back() -> None:
    assert gc.isenabled()
    with step_gc(True):
        assert not gc.isenabled()
    assert gc.isenabled()
    with step_gc(False):
        assert gc.isenabled()
    with pytest.raises(RuntimeError), step_gc(True):
        raise RuntimeError("a failed step")
    assert gc.isenabled()


def test_a_step_cancelled_or_overlapped_across_an_await_never_leaves_the_collector_off() -> None:
    # A step awaits Redis with the collector off; a cancelled step (a worker stopping, a
    # rebalance) and two steps whose awaits interleave, leaving in either order, give
    # it back (the one that found it on turns it on again).
    async def step(inside: asyncio.Event, leave: asyncio.Event) -> None:
        with step_gc(True):
            inside.set()
            await leave.wait()

    async def overlapped(first_out: int) -> None:
        inside, leave = [asyncio.Event(), asyncio.Event()], [asyncio.Event(), asyncio.Event()]
        tasks = []
        for n in (0, 1):
            tasks.append(asyncio.create_task(step(inside[n], leave[n])))
            await inside[n].wait()
        assert not gc.isenabled()
        leave[first_out].set()
        leave[1 - first_out].set()
        await asyncio.gather(*tasks)

    async def cancelled() -> None:
        inside = asyncio.Event()
        task = asyncio.create_task(step(inside, asyncio.Event()))
        await inside.wait()
        assert not gc.isenabled()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    for run in (overlapped(0), overlapped(1), cancelled()):
        asyncio.run(run)
        assert gc.isenabled()
