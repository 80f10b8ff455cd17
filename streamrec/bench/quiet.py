"""When the stack is quiet: no retrain, refresh sweep or waiting lists (the burst bench's
held and lone phases are measured in that state)."""

from __future__ import annotations

import time
from typing import Any


def wait_until(predicate: Any, timeout_s: float, interval: float = 0.05) -> float:
    """Poll ``predicate`` until true; the ``perf_counter`` time it was seen true."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not reached within {timeout_s:.0f}s")
        time.sleep(interval)
    return time.perf_counter()


def quiet(redis_url: str) -> bool:
    """True once no retrain runs and no worker has a refresh sweep or waiting lists left
    (heartbeats): the steady state the held rate and the lone events are measured in.
    A model published that a worker's heartbeat does not show yet is not quiet: the
    worker swaps to it within seconds and sweeps (the one slow lone event of the runs
    of 2026-12-06 was sent in that gap)."""
    import redis

    from core.redis_keys import RedisKeys
    from streamrec.stack.probes import worker_heartbeats

    keys = RedisKeys()
    client = redis.Redis.from_url(redis_url)
    try:
        if client.exists(keys.train_lock):
            return False
        raw = client.get(keys.model_current)
        published = raw.decode() if isinstance(raw, bytes) else ""
    finally:
        client.close()
    beats = worker_heartbeats(redis_url).values()
    return bool(beats) and all(
        b.get("sweep_pending", "0") == "0" and b.get("lists_waiting", "0") == "0"
        # a model the worker has not started its sweep for reports nothing pending yet
        and b.get("sweep_version", "") == b.get("model_version", "") == published
        for b in beats)


#: Longer than the workers' heartbeat period: what a heartbeat said is not about to change.
HEARTBEAT_S = 2.5


def wait_quiet(redis_url: str) -> float:
    """Wait until :func:`quiet` holds at two looks a heartbeat period apart (a worker that
    just took a new model may not have reported its refresh sweep yet); seconds waited."""
    started = time.perf_counter()
    while True:
        wait_until(lambda: quiet(redis_url), 900, interval=0.5)
        time.sleep(HEARTBEAT_S)
        if quiet(redis_url):
            return round(time.perf_counter() - started, 1)
