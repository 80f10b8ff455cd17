"""Test helper: ``streamrec worker`` with a slow seek and slow batches.

Usage: ``python slow_seek_worker.py SEEK_SECONDS BATCH_SECONDS``. On a loaded machine
Faust's seek to the committed offsets at the end of a rebalance can take a second or
more while the agent falls behind, so fetched messages wait in the stream queue; this
makes both happen on any machine, so tests can check that no message fetched meanwhile
is dropped (see ``stream/faust_compat/commit_safety.py``).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from faust.transport.consumer import Consumer

from stream.processor import EventProcessor
from streamrec.cli import main

_perform_seek = Consumer.perform_seek
_process = EventProcessor.process


def slow_down(seek_s: float, batch_s: float) -> None:
    """Make every ``Consumer.perform_seek`` and every processed batch wait first."""

    async def perform_seek(self: Any) -> None:
        await asyncio.sleep(seek_s)
        await _perform_seek(self)

    async def process(self: Any, *args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(batch_s)
        return await _process(self, *args, **kwargs)

    Consumer.perform_seek = perform_seek  # type: ignore[method-assign]
    EventProcessor.process = process  # type: ignore[method-assign]


if __name__ == "__main__":
    slow_down(float(sys.argv[1]), float(sys.argv[2]))
    sys.exit(main(["worker"]))
