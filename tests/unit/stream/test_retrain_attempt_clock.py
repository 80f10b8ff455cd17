"""The minute between scheduled retrain attempts before the first model is monotonic."""

from __future__ import annotations

import math
import time

import pytest

from core.settings import Settings
from stream.state import WorkerState


def test_a_wall_clock_stepped_back_does_not_hold_the_first_retrain_off(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The gap was ``time.time() - last_train_attempt > 60``: a wall clock stepped back
    an hour after an attempt (NTP, a VM restore) held the first model off for that hour."""
    # No server is contacted: the Redis client connects on first use.
    state = WorkerState(Settings(redis_url="redis://127.0.0.1:1/0"))
    assert state.since_train_attempt() == math.inf  # none yet: due at once
    state.last_train_attempt = time.monotonic() - 61
    wall = time.time()
    monkeypatch.setattr(time, "time", lambda: wall - 3600)
    assert state.since_train_attempt() > 60
    state.last_train_attempt = time.monotonic()
    monkeypatch.setattr(time, "time", lambda: wall + 3600)  # stepped forward: still waits
    assert state.since_train_attempt() < 60
