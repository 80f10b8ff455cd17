"""Fixtures that run streamrec's own processes against the session's real servers."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import redis

from core import kafka_tools
from core.net import free_port, wait_for_port
from core.redis_keys import RedisKeys
from core.settings import Settings, env_for_child
from streamrec.stack.children import api_ready
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


@contextmanager
def api_process(settings: Settings, tmp_path: Any, **overrides: Any
                ) -> Iterator[tuple[httpx.Client, Settings]]:
    """An API process on a free port with ``settings`` and ``overrides``; a client of it
    once it is ready, and the settings it runs with. A port another test's server took
    first (the API then exits) is given up for a new one, up to three times."""
    for _ in range(3):
        s = settings.model_copy(update={"api_port": free_port(), **overrides})
        api = spawn([sys.executable, "-m", "streamrec.cli", "api"],
                    log_path=tmp_path / "api.log", env=env_for_child(s))
        url = f"http://127.0.0.1:{s.api_port}"
        try:
            wait_for_port("127.0.0.1", s.api_port, timeout=30, proc=api)
            wait_for(lambda: api.poll() is not None or api_ready(url), 30)  # noqa: B023
        except RuntimeError:
            pass  # exited before anything listened
        if api.poll() is None:
            break
        stop_pid(api.pid)
    else:
        raise RuntimeError(f"the API did not start on three free ports (see {tmp_path}/api.log)")
    try:
        with httpx.Client(base_url=url, timeout=10) as client:
            yield client, s
    finally:
        stop_pid(api.pid)
