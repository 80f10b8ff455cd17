"""Polling with a deadline, for tests that wait on real processes (no fixed sleeps)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_for(predicate: Callable[[], Any], timeout: float, what: str = "condition",
             every: float = 0.1) -> Any:
    """The first truthy value of ``predicate()``, polled every ``every`` seconds; an
    ``AssertionError`` naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout}s")
