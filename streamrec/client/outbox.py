"""Background batching of tracked events: a bounded queue drained by one sender task.

Events wait in a queue of at most ``max_queue`` entries (``put`` waits while it is full:
back-pressure instead of unbounded memory when the API is down). The sender takes up to
``batch_size`` of them as soon as that many wait, or when the oldest has waited
``flush_interval_s``, or at once for :meth:`Outbox.drain`; up to ``max_in_flight``
batches are delivered at the same time (1 keeps the order between batches).

The outbox, and so its client, belongs to the event loop it first ran on: its sender task
and events live there. A call from another loop (a second ``asyncio.run`` with the same
client) raises :class:`ClientClosed` instead of waiting for a sender that died with the
first loop.

Every event has a sequence number; ``drain`` waits until every event put before it was
delivered or given up on, without waiting for events put later, so a busy producer
cannot starve a flush.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from streamrec.client.errors import ClientClosed

#: Delivers one batch; failures are its own business (it never raises).
Deliver = Callable[[list[dict[str, Any]]], Awaitable[None]]


class Outbox:
    """The queue, the sender task and the bookkeeping of what has been delivered.

    All state lives on one event loop, so plain attributes need no lock; the sender, the
    callers of ``put`` waiting for room and those of ``drain`` are woken by an event, an
    event and per-call futures (so a thousand pending drains cost nothing per ``put``).
    """

    def __init__(self, deliver: Deliver, *, batch_size: int, flush_interval_s: float,
                 max_queue: int, max_in_flight: int) -> None:
        if batch_size < 1 or max_queue < 1 or max_in_flight < 1 or flush_interval_s < 0:
            raise ValueError("batch_size, max_queue and max_in_flight must be >= 1")
        self._deliver = deliver
        self._batch_size = batch_size
        self._interval = flush_interval_s
        self._max_queue = max_queue
        self._max_in_flight = max_in_flight
        self._queue: deque[tuple[int, float, dict[str, Any]]] = deque()
        self._wake: asyncio.Event | None = None  # the sender has something to look at
        self._room: asyncio.Event | None = None  # set while the queue has room
        self._drains: list[tuple[int, int, asyncio.Future[None]]] = []  # heap by target
        self._next_seq = 0
        self._done_seq = 0  # every event with a smaller sequence number is finished
        self._finished: dict[int, int] = {}  # batches finished out of order: first → end
        self._urgent_seq = 0  # events below this go out now (drain)
        self._in_flight = 0
        self._closing = False
        self._sender: asyncio.Task[None] | None = None
        self._batches: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def queued(self) -> int:
        """Events waiting (not yet handed to a delivery)."""
        return len(self._queue)

    def check_loop(self) -> None:
        """Bind to the running event loop at the first call; :class:`ClientClosed` from
        any other loop (its sender, queue and connections are the first loop's)."""
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop:
            ended = ", which has ended" if self._loop.is_closed() else ""
            raise ClientClosed(f"this client belongs to the event loop it first ran on"
                               f"{ended}; make one client per event loop")

    def _events(self) -> tuple[asyncio.Event, asyncio.Event]:
        if self._wake is None or self._room is None:
            self._wake, self._room = asyncio.Event(), asyncio.Event()
            self._room.set()
        return self._wake, self._room

    async def put(self, event: dict[str, Any]) -> None:
        """Queue one event, waiting while the queue is full."""
        self.check_loop()
        wake, room = self._events()
        while len(self._queue) >= self._max_queue and not self._closing:
            room.clear()
            await room.wait()
        if self._closing:
            raise RuntimeError("the outbox is closed")
        self._queue.append((self._next_seq, time.monotonic(), event))
        self._next_seq += 1
        if self._sender is None:
            self._sender = asyncio.create_task(self._run(), name="streamrec-outbox")
        if len(self._queue) in (1, self._batch_size):
            wake.set()

    async def drain(self) -> None:
        """Send what waits now and return once every event put so far is finished."""
        self.check_loop()
        target = self._next_seq
        if self._done_seq >= target:
            return
        wake, _ = self._events()
        self._urgent_seq = max(self._urgent_seq, target)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._drains, (target, id(done), done))
        wake.set()
        await done

    async def close(self) -> None:
        """Drain, then stop the sender task."""
        await self.drain()
        wake, room = self._events()
        self._closing = True
        wake.set()
        room.set()
        if self._sender is not None:
            await self._sender

    # -- the sender --------------------------------------------------------------------------
    def _due_in(self) -> float | None:
        """0 when a batch should leave now, else seconds until it should (None: idle)."""
        if self._in_flight >= self._max_in_flight or not self._queue:
            return None
        first_seq, queued_at, _ = self._queue[0]
        if (len(self._queue) >= self._batch_size or first_seq < self._urgent_seq
                or self._closing):
            return 0.0
        return max(0.0, queued_at + self._interval - time.monotonic())

    async def _run(self) -> None:
        wake, room = self._events()
        while True:
            due = self._due_in()
            if due != 0.0:
                if self._closing and not self._queue and not self._in_flight:
                    return
                wake.clear()
                try:
                    await asyncio.wait_for(wake.wait(), due)
                except TimeoutError:
                    pass
                continue
            count = min(self._batch_size, len(self._queue))
            entries = [self._queue.popleft() for _ in range(count)]
            self._in_flight += 1
            room.set()
            task = asyncio.create_task(self._send(entries[0][0], [e for _, _, e in entries]))
            self._batches.add(task)
            task.add_done_callback(self._batches.discard)

    async def _send(self, first: int, events: list[dict[str, Any]]) -> None:
        try:
            await self._deliver(events)
        finally:
            self._in_flight -= 1
            self._finished[first] = first + len(events)
            while self._done_seq in self._finished:
                self._done_seq = self._finished.pop(self._done_seq)
            while self._drains and self._drains[0][0] <= self._done_seq:
                _, _, done = heapq.heappop(self._drains)
                if not done.done():
                    done.set_result(None)
            if self._wake is not None:
                self._wake.set()
