"""Several API processes on one port (``streamrec up --api-processes M``): a scrape of
``/metrics`` reaches any one of them and shows the sums of all of them, so counters
never jump between processes' values (real processes, a real broker and Redis)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import httpx
import pytest

from api.metrics import MULTIPROC_ENV
from core.net import free_port, wait_for_port
from core.settings import Settings, env_for_child
from streamrec.stack.children import api_metrics_dir, api_ready
from streamrec.stack.servers import spawn, stop_pid
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
