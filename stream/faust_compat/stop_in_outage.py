"""A worker stopped (SIGTERM) while Kafka is away must stop, not hang.

aiokafka's ``Fetcher.close`` cancels its pending fetch tasks and awaits each one. A fetch
that failed (the broker is away) sleeps out its retry backoff, and that sleep is not
guarded against the cancellation the way the request itself is, so the awaited task
ends cancelled and ``close`` raises ``CancelledError``. Faust's consumer thread stops
the consumer in its shutdown and mode's thread catches ``Exception`` only: the thread
died with a traceback on stderr, never said it was down, and the worker waited for it
until ``streamrec down`` (or systemd) killed it, without its ``worker stopped cleanly``
line. Seen with the broker stopped for 8 s before SIGTERM, every time.

:func:`install` wraps ``close``: a fetch task's cancellation, which ``close`` itself
asked for, ends that task and ``close`` finishes the others; a cancellation of the
closing task itself still propagates.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka.consumer.fetcher import Fetcher

_installed = False


def _close_past_cancelled_fetches(original: Callable[[Any], Awaitable[None]]
                                  ) -> Callable[[Any], Awaitable[None]]:
    @functools.wraps(original)
    async def close(self: Any) -> None:
        try:
            await original(self)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the close itself was cancelled, not one of its fetches
            for pending in list(self._pending_tasks):
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pending

    return close


def install() -> None:
    """Patch aiokafka's ``Fetcher.close`` (idempotent; call before the app runs)."""
    global _installed
    if _installed:
        return
    Fetcher.close = _close_past_cancelled_fetches(Fetcher.close)  # type: ignore[method-assign]
    _installed = True
