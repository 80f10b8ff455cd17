"""stream.faust_compat.stop_in_outage: aiokafka's fetcher closes past a fetch task that
was sleeping out its retry backoff (the broker away) when it was cancelled."""

from __future__ import annotations

import asyncio
import inspect
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.consumer.fetcher import Fetcher

from stream.faust_compat import stop_in_outage

ORIGINAL = inspect.unwrap(Fetcher.close)


def fetcher_in_an_outage() -> Any:
    """What ``Fetcher.close`` reads, with one fetch task in its retry backoff sleep (as
    ``_proc_fetch_request`` after a failed request: unguarded against cancellation)."""

    async def backoff() -> None:
        await asyncio.sleep(30)

    return SimpleNamespace(_closed=False, _fetch_task=asyncio.create_task(asyncio.sleep(30)),
                           _fetch_waiters=set(), _notify=lambda waiter: None,
                           _pending_tasks={asyncio.create_task(backoff())})


def test_aiokafka_close_still_awaits_its_cancelled_fetch_tasks() -> None:
    # The internal this patch relies on; a release that changes it needs a fresh look.
    source = inspect.getsource(ORIGINAL)
    assert "self._pending_tasks" in source and "x.cancel()" in source

    async def scenario() -> None:
        fetcher = fetcher_in_an_outage()
        await asyncio.sleep(0)
        with pytest.raises(asyncio.CancelledError):
            await ORIGINAL(fetcher)  # the bug: the worker's consumer thread died here

    asyncio.run(scenario())


def test_close_finishes_past_a_fetch_cancelled_in_its_backoff() -> None:
    close = stop_in_outage._close_past_cancelled_fetches(ORIGINAL)

    async def scenario() -> None:
        fetcher = fetcher_in_an_outage()
        await asyncio.sleep(0)
        await asyncio.wait_for(close(fetcher), 5)
        assert fetcher._closed and all(t.done() for t in fetcher._pending_tasks)

    asyncio.run(scenario())


def test_a_cancelled_close_still_propagates() -> None:
    close = stop_in_outage._close_past_cancelled_fetches(ORIGINAL)

    async def slow_to_end() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            await asyncio.sleep(0.5)
            raise

    async def scenario() -> None:
        fetcher = fetcher_in_an_outage()
        fetcher._pending_tasks = {asyncio.create_task(slow_to_end())}
        closing = asyncio.create_task(close(fetcher))
        await asyncio.sleep(0.01)
        closing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await closing

    asyncio.run(scenario())


def test_install_is_idempotent() -> None:
    stop_in_outage.install()
    patched = Fetcher.close
    stop_in_outage.install()
    assert Fetcher.close is patched and inspect.unwrap(patched) is ORIGINAL
