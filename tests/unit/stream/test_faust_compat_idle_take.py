"""stream.faust_compat.idle_take: the worker's batches of a Faust stream, driven through a
Faust channel in this process (no broker: nothing here connects)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from faust.streams import Stream

from stream.faust_compat.idle_take import take_batches

Take = Callable[[Any], Any]


async def _drive(take: Take, values: list[int], *, idle_s: float = 0.1,
                 settle_s: float = 0.1) -> dict[str, Any]:
    """A started stream over a channel: ``take(stream)`` consumed for ``idle_s`` with
    nothing sent, then ``values`` sent at once; what it saw."""
    app = faust.App("compat-take", broker="kafka://127.0.0.1:1", store="memory://",
                    web_enabled=False)
    channel = app.channel(maxsize=100)
    stream = app.stream(channel)
    app.flow_control.resume()
    await stream.maybe_start()
    waits = 0
    acked: list[int] = []
    batches: list[list[int]] = []
    acked_at_yield: list[list[int]] = []
    wait_for_stopped = stream.wait_for_stopped
    ack = stream.ack

    async def counted_wait(*args: Any, **kwargs: Any) -> Any:
        nonlocal waits
        waits += 1
        return await wait_for_stopped(*args, **kwargs)

    async def recorded_ack(event: Any) -> bool:
        acked.append(event.value)
        result: Awaitable[bool] = ack(event)
        return await result

    stream.wait_for_stopped = counted_wait  # type: ignore[method-assign]
    stream.ack = recorded_ack  # type: ignore[method-assign]

    async def consume() -> None:
        async for batch in take(stream):
            acked_at_yield.append(list(acked))
            batches.append([event.value for event in batch])

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(idle_s)
    idle_waits = waits
    for value in values:
        await channel.send(value=value)
    await asyncio.sleep(settle_s)
    await stream.stop()
    await asyncio.wait_for(task, 5)  # the stream's stop ends the loop
    return {"idle_waits": idle_waits, "batches": batches, "acked": acked,
            "acked_at_yield": acked_at_yield}


def test_batches_hold_at_most_max_events_in_order_and_a_partial_one_closes() -> None:
    seen = asyncio.run(_drive(lambda s: take_batches(s, 2, 0.02), [0, 1, 2, 3, 4]))
    assert seen["batches"] == [[0, 1], [2, 3], [4]]


def test_an_idle_stream_waits_without_a_timer() -> None:
    ours = asyncio.run(_drive(lambda s: take_batches(s, 10, 0.005), []))
    theirs = asyncio.run(_drive(lambda s: s.take_events(10, 0.005), []))
    assert ours["idle_waits"] <= 1  # one wait for the first event, whatever the idle time
    assert theirs["idle_waits"] >= 5  # Faust's loop: one wait per `within`, idle or not


def test_events_are_acked_only_after_their_batch_was_handled() -> None:
    seen = asyncio.run(_drive(lambda s: take_batches(s, 2, 0.02), [0, 1, 2, 3]))
    assert seen["batches"] == [[0, 1], [2, 3]]
    # at each yield, every earlier batch is acked and none of this one's events is
    assert seen["acked_at_yield"] == [[], [0, 1]]
    assert seen["acked"] == [0, 1, 2, 3]


def test_the_faust_internals_it_relies_on_are_still_there() -> None:
    for name in ("add_processor", "_enable_passive", "ack", "wait", "wait_for_stopped",
                 "crash"):
        assert callable(getattr(Stream, name)), name
    init = inspect.getsource(Stream.__init__)
    for attribute in ("self._processors", "self._active_agens", "self.enable_acks"):
        assert attribute in init, attribute
    assert hasattr(Stream, "current_event")
    # Faust's own take_events: the same hooks (the event a processor sees is the
    # stream's current one), the processor removed on the way out
    take = inspect.getsource(Stream.take_events)
    for used in ("self.add_processor", "self.current_event", "self._processors.remove",
                 "self._enable_passive"):
        assert used in take, used


def test_with_ack_later_the_caller_acks_its_batches_itself() -> None:
    seen = asyncio.run(_drive(lambda s: take_batches(s, 2, 0.02, ack_later=True), [0, 1, 2]))
    assert seen["batches"] == [[0, 1], [2]]
    # asking for the next batch acks nothing: the batch loop acks once a write landed
    assert seen["acked_at_yield"] == [[], []] and seen["acked"] == []
