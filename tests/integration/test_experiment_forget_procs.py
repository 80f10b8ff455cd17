"""A forgotten id that comes back is assigned again and counts as a new entity
(docs/privacy.md), whichever of several API processes on one port answers it: each
process caches settled assignments, and the one that served the id before the forget
used to keep serving its cached variant without recording or exposing it again, so the
returning id never counted (real processes, a real broker and Redis)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from core.net import free_port, wait_for_port
from core.redis_keys import RedisKeys
from core.settings import Settings, env_for_child
from streamrec.stack.children import api_ready
from streamrec.stack.servers import spawn, stop_pid
from tests.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e, pytest.mark.broker]

EXPERIMENT = {"variants": [{"name": "control", "weight": 1.0, "serve": "popular"}],
              "contexts": ["home"]}


def test_a_forgotten_id_is_enrolled_again_by_the_process_that_cached_it(
        settings: Settings, start_worker: Callable[..., Any], tmp_path: Path) -> None:
    start_worker()
    store = redis.Redis.from_url(settings.redis_url)
    s = settings.model_copy(update={"api_port": free_port(), "api_reuse_port": True})
    url = f"http://127.0.0.1:{s.api_port}"
    procs = [spawn([sys.executable, "-m", "streamrec.cli", "api"],
                   log_path=tmp_path / f"api{k}.log", env=env_for_child(s)) for k in range(2)]
    try:
        wait_for_port("127.0.0.1", s.api_port, timeout=30)
        wait_for(lambda: api_ready(url), 30)

        def entities() -> int:
            with httpx.Client(base_url=url, timeout=10) as admin:
                report = admin.get("/v1/admin/experiments/fx/report").json()
            return int(report["variants"][0]["entities"])

        with httpx.Client(base_url=url, timeout=10) as admin:
            assert admin.put("/v1/admin/experiments/fx", json=EXPERIMENT).status_code == 200
        # One kept-alive connection: every answer below comes from the same process.
        with httpx.Client(base_url=url, timeout=10) as shopper:
            for _ in range(2):
                body = shopper.get("/v1/users/back-again/recommendations").json()
                assert body["experiment"] == {"id": "fx", "variant": "control"}
            wait_for(lambda: entities() == 1, 20, "the first exposure counted")
            with httpx.Client(base_url=url, timeout=10) as admin:  # any process
                assert admin.delete("/v1/users/back-again").status_code == 202

            assigned = RedisKeys().experiment_assign("fx")
            wait_for(lambda: not store.hexists(assigned, "back-again"), 20,
                     "the worker erased the assignment")
            # The id comes back on the process that served it before the forget.
            body = shopper.get("/v1/users/back-again/recommendations").json()
            assert body["experiment"] == {"id": "fx", "variant": "control"}
            wait_for(lambda: entities() == 2, 20, "the returning id counted as a new entity")
    finally:
        for proc in procs:
            stop_pid(proc.pid)
