"""Several API processes on one port (``streamrec up --api-processes M``): a scrape of
``/metrics`` reaches any one of them and shows the sums of all of them, so counters
never jump between processes' values (real processes, a real broker and Redis)."""

from __future__ import annotations

import re
import signal
import socket
import sys
from pathlib import Path

import httpx
import pytest

from api.metrics import MULTIPROC_ENV
from core.net import free_port, wait_for_port
from core.settings import Settings, env_for_child
from streamrec.stack.children import api_metrics_dir, api_ready
from streamrec.stack.servers import pid_alive, spawn, stop_pid
from tests.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.broker]
POPULAR = re.compile(r'^streamrec_api_requests_total\{method="GET",route="/v1/popular",'
                     r'status="200"\} (\S+)$', re.M)


def test_a_scrape_sums_every_api_process_on_the_port(settings: Settings,
                                                       tmp_path: Path) -> None:
    s = settings.model_copy(update={"api_port": free_port(), "api_reuse_port": True})
    shared = api_metrics_dir(s, fresh=True)
    env = {**env_for_child(s), MULTIPROC_ENV: str(shared)}
    url = f"http://127.0.0.1:{s.api_port}"
    procs = [spawn([sys.executable, "-m", "streamrec.cli", "api"],
                   log_path=tmp_path / f"api{k}.log", env=env) for k in range(2)]
    try:
        wait_for_port("127.0.0.1", s.api_port, timeout=30)
        wait_for(lambda: api_ready(url), 30)
        served = 0
        for _ in range(60):  # a connection each: the kernel spreads them over both
            with httpx.Client(base_url=url, timeout=10) as client:
                assert client.get("/v1/popular").status_code == 200
            served += 1
        # Both processes served (each keeps its values in a file of its own pid).
        assert len({p.name.rsplit("_", 1)[-1] for p in shared.glob("counter_*.db")}) == 2
        for _ in range(6):
            with httpx.Client(base_url=url, timeout=10) as client:
                text = client.get("/metrics").text
            found = POPULAR.search(text)
            assert found is not None and float(found.group(1)) == served
    finally:
        for proc in procs:
            stop_pid(proc.pid)
    # A fresh start drops the values of processes that ran before.
    assert not list(api_metrics_dir(s, fresh=True).glob("*.db"))


IN_FLIGHT = re.compile(r"^streamrec_api_requests_in_flight (\S+)$", re.M)


def test_a_killed_process_leaves_no_request_in_flight(settings: Settings,
                                                       tmp_path: Path) -> None:
    """An API process killed while it answered a request (SIGKILL, the OOM killer: no
    exit hook runs) kept that request in ``streamrec_api_requests_in_flight`` in every
    later scrape of its successors: the gauge sums live processes only."""
    s = settings.model_copy(update={"api_port": free_port(), "api_reuse_port": True})
    shared = api_metrics_dir(s, fresh=True)
    env = {**env_for_child(s), MULTIPROC_ENV: str(shared)}
    url = f"http://127.0.0.1:{s.api_port}"

    def start(name: str) -> int:
        proc = spawn([sys.executable, "-m", "streamrec.cli", "api"],
                     log_path=tmp_path / f"{name}.log", env=env)
        wait_for_port("127.0.0.1", s.api_port, timeout=30)
        wait_for(lambda: api_ready(url), 30)
        return proc.pid

    def in_flight() -> float:
        with httpx.Client(base_url=url, timeout=10) as client:
            found = IN_FLIGHT.search(client.get("/metrics").text)
        assert found is not None
        return float(found.group(1))  # the scrape itself is one

    first = start("first")
    # A tracking POST whose body never comes: in flight until the process dies.
    held = socket.create_connection(("127.0.0.1", s.api_port))
    second = 0
    try:
        held.sendall(b"POST /v1/events HTTP/1.1\r\nHost: api\r\nContent-Type: "
                     b"application/json\r\nContent-Length: 100\r\n\r\n{")
        wait_for(lambda: in_flight() == 2, 10)
        stop_pid(first, timeout=0.1, sig=signal.SIGKILL)
        wait_for(lambda: not pid_alive(first), 10)
        second = start("second")
        assert in_flight() == 1
    finally:
        held.close()
        for pid in (first, second):
            if pid:
                stop_pid(pid)
