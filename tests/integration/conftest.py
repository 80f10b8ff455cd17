"""Fixtures that run streamrec's own processes against the session's real servers."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from core import kafka_tools
from core.redis_keys import RedisKeys
from core.settings import Settings, env_for_child
from streamrec.stack.servers import spawn, stop_pid
from tests.polling import wait_for

WORKER_CMD = [sys.executable, "-m", "streamrec.cli", "worker"]


def wait_worker_ready(settings: Settings, pid: int, timeout: float = 60.0,
                      proc: Any = None) -> None:
    """Block until the worker with ``pid`` reports partitions assigned."""
    client = redis.Redis.from_url(settings.redis_url)

    def ready() -> bool:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"worker {pid} exited with {proc.returncode}; see its log")
        beats = (client.hgetall(key) for key in client.scan_iter(RedisKeys().worker_pattern))
        return any(beat.get(b"pid") == str(pid).encode() and beat.get(b"ready") == b"1"
                   for beat in beats)

    try:
        wait_for(ready, timeout, f"worker {pid} ready", interval=0.1)
    finally:
        client.close()


@pytest.fixture
def start_worker(settings: Settings, tmp_path: Any) -> Iterator[Callable[..., Any]]:
    """Start worker processes (real Faust on the real broker); all stopped at teardown."""
    kafka_tools.create_topics(settings)
    started: list[Any] = []

    def start(wait: bool = True, **overrides: Any) -> Any:
        proc = spawn(WORKER_CMD, log_path=tmp_path / f"worker-{len(started)}.log",
                     env=env_for_child(settings.model_copy(update=overrides)))
        started.append(proc)
        if wait:
            wait_worker_ready(settings, proc.pid, proc=proc)
        return proc

    yield start
    for proc in started:
        stop_pid(proc.pid, timeout=10)
