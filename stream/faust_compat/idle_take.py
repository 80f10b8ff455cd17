"""Batches of a Faust stream's events without a timer while the stream is idle.

Faust's ``Stream.take_events(max_, within)`` waits for a full buffer with a timeout of
``within`` in a loop, whether or not any event is buffered: an idle agent wakes every
``within`` seconds (every 5 ms at ``Settings.stream_batch_within_s``), and each wake-up
builds the futures of a wait. Two agents per worker (events, catalog) made that ~7 % of a
core per idle worker, about half its idle CPU (py-spy of an idle two-worker stack,
2026-12-06; the rest is the fetch long-poll of :mod:`stream.faust_compat.fetch_wait`).

:func:`take_batches` yields the same batches from the same Faust hooks (a stream
processor fills the buffer; the events are acked after the caller is done with them, or
by the caller itself with ``ack_later``, so an offset is committed only past a processed
message), but an empty buffer waits for its
first event with no timeout; from that event on it waits ``within`` for more or until
``max_`` are buffered. A lone event after idle is held ``within`` (5 ms) instead of
0-5 ms, and a busy stream batches as before.

It relies on these Faust internals (checked in
``tests/unit/stream/test_faust_compat_idle_take.py``):
``Stream.add_processor`` and ``_processors`` (the hook that buffers), ``_enable_passive``
(the stream's channel consumed in the background), ``enable_acks`` (off while the buffer
acks by itself), ``current_event`` and ``ack``, ``wait`` / ``wait_for_stopped`` (mode's
waits that also end when the service stops), and ``_active_agens`` (generators Faust
closes when the stream stops).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

__all__ = ["take_batches"]


def take_batches(stream: Any, max_: int, within: float, *, ack_later: bool = False
                 ) -> AsyncGenerator[list[Any], None]:
    """Lists of at most ``max_`` of ``stream``'s events: each list starts with the first
    event after the previous one was handled, and closes when ``max_`` are buffered or
    ``within`` seconds later. The events of a list are acked once the caller asks for
    the next list (or leaves the loop); with ``ack_later`` the caller acks them itself
    (``stream.ack``, lists in order), e.g. once a write it left in flight has landed.
    Registered with the stream, which closes it when it stops (as Faust does with its
    own ``take_events``)."""
    batches = _batches(stream, max_, within, ack_later)
    stream._active_agens.add(batches)
    return batches


async def _batches(stream: Any, max_: int, within: float, ack_later: bool
                   ) -> AsyncGenerator[list[Any], None]:
    """:func:`take_batches`'s generator."""
    events: list[Any] = []
    some = asyncio.Event()   # at least one event buffered
    full = asyncio.Event()   # max_ events buffered
    taken = asyncio.Event()  # a full buffer was handed out: the hook may go on
    handing: asyncio.Future[None] | None = None  # set while the caller holds a batch

    async def buffer_event(value: Any) -> Any:
        nonlocal handing
        try:
            if handing is not None:  # no event joins a batch the caller is handling
                try:
                    await handing
                finally:
                    handing = None
            event = stream.current_event
            if event is None:
                raise RuntimeError("a buffered value without Faust's current event")
            events.append(event)
            some.set()
            if len(events) >= max_:
                full.set()
                taken.clear()
                await stream.wait(taken)  # never more than max_ in a batch
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - Faust's own rule: the stream crashes
            stream.log.exception("Error buffering an event: %r", exc)
            await stream.crash(exc)
        return value

    acks = stream.enable_acks
    stream.enable_acks = False
    stream.add_processor(buffer_event)
    stream._enable_passive(stream.channel.__aiter__())
    try:
        while not stream.should_stop:
            if not events:
                await stream.wait_for_stopped(some)  # idle: no timer
            await stream.wait_for_stopped(full, timeout=within)
            if not events:
                continue
            handing = asyncio.get_running_loop().create_future()
            batch = list(events)
            try:
                yield batch
            finally:
                events.clear()
                for event in () if ack_later else batch:
                    await stream.ack(event)
                some.clear()
                full.clear()
                if not handing.done():
                    handing.set_result(None)
                taken.set()
    finally:
        stream.enable_acks = acks
        stream._processors.remove(buffer_event)
