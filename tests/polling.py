"""Waiting for something asynchronous in a test: poll with a deadline, never sleep blind.

The one helper every test uses (it replaced five local copies): ``wait_for(predicate)``
calls ``predicate`` until it returns something truthy and returns that, or fails the test
once ``timeout`` seconds have passed; ``wait_for_async`` is the same inside an event loop
(it yields to the loop between polls instead of blocking it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def _done(value: object, deadline: float, timeout: float, what: str) -> bool:
    """Whether ``value`` ends the wait; an ``AssertionError`` naming ``what`` once the
    deadline passed without it."""
    if value:
        return True
    if time.monotonic() >= deadline:
        raise AssertionError(f"not within {timeout}s: {what or 'condition not met'}")
    return False


def wait_for(predicate: Callable[[], T], timeout: float = 60.0, what: str = "",
             interval: float = 0.05) -> T:
    """``predicate()``'s first truthy value, polled every ``interval`` seconds; an
    ``AssertionError`` naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not _done(value := predicate(), deadline, timeout, what):
        time.sleep(interval)
    return value


async def wait_for_async(predicate: Callable[[], T], timeout: float = 60.0, what: str = "",
                         interval: float = 0.05) -> T:
    """:func:`wait_for` for a test running in an event loop: polls with ``asyncio.sleep``
    so the tasks it waits on (an API's background refresh) can run."""
    deadline = time.monotonic() + timeout
    while not _done(value := predicate(), deadline, timeout, what):
        await asyncio.sleep(interval)
    return value
