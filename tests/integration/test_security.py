"""Secrets never reach logs: worker, API and CLI run with a Redis password, API keys and a
SASL password configured (at DEBUG level), are exercised, and their output is searched."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from core import kafka_tools
from core.net import free_port, wait_for_port
from core.settings import Settings, env_for_child
from streamrec.stack.servers import spawn, start_redis, stop_pid
from tests.integration.conftest import WORKER_CMD, wait_worker_ready
from tests.integration.worker_view import heartbeat
from tests.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e]

REDIS_PW = "redis-pw-Zq81xT"
TRACK, READ, ADMIN = "trk-7f3a9c-0123456789", "read-51be0d-012345678", "adm-c0ffee42-01234567"
SASL_PW = "sasl-pw-88aa"


def test_no_secret_in_any_log(settings: Settings, tmp_path: Path) -> None:
    srv = start_redis(tmp_path, password=REDIS_PW)
    s = settings.model_copy(update={
        "redis_url": f"redis://:{REDIS_PW}@{srv.address}/0", "api_port": free_port(),
        "tracking_keys": TRACK, "read_keys": READ, "admin_keys": ADMIN,
        "kafka_sasl_password": SASL_PW,  # unused with PLAINTEXT, but configured
        "log_level": "DEBUG"})
    kafka_tools.create_topics(s)
    env = env_for_child(s)
    worker = spawn(WORKER_CMD, log_path=tmp_path / "worker.log", env=env)
    api = spawn([sys.executable, "-m", "streamrec.cli", "-v", "api"],
                log_path=tmp_path / "api.log", env=env)
    try:
        wait_worker_ready(s, worker.pid, proc=worker)
        wait_for_port("127.0.0.1", s.api_port, timeout=30, proc=api)
        with httpx.Client(base_url=f"http://127.0.0.1:{s.api_port}", timeout=10) as http:
            wait_for(lambda: http.get("/readyz").status_code == 200, 30, "API ready")
            ev = {"type": "view", "user_id": "s1", "item_id": "x"}
            assert http.post("/v1/events", json=ev, headers={"X-API-Key": TRACK}
                             ).status_code == 202
            assert http.get("/v1/popular", headers={"X-API-Key": READ}).status_code == 200
            assert http.get("/v1/popular", headers={"X-API-Key": TRACK}).status_code == 403
            assert http.get("/v1/popular", headers={"X-API-Key": ADMIN + "x"}
                            ).status_code == 401
            assert http.get("/v1/admin/items/x/stats", headers={"X-API-Key": ADMIN}
                            ).status_code == 200
        # A heartbeat or two in the worker log: the one published 2 s on (every 2 s)
        since = time.time()
        wait_for(lambda: float(heartbeat(s, worker.pid).get("heartbeat_at", 0)) >= since + 2,
                 30, "the worker's heartbeats")
        outputs = []
        for args in (["config"], ["config", "--json"], ["status"]):
            proc = subprocess.run([sys.executable, "-m", "streamrec.cli", "-v", *args],
                                  env=env, capture_output=True, text=True, timeout=120)
            outputs.append(proc.stdout + proc.stderr)
    finally:
        stop_pid(api.pid)
        stop_pid(worker.pid)
        srv.stop()
    logs = [(tmp_path / "worker.log").read_text(errors="replace"),
            (tmp_path / "api.log").read_text(errors="replace"), *outputs]
    assert all(logs) and "***" in outputs[0]
    # Each process says at start what it connected to, password masked, and the worker
    # that it stopped cleanly; no terminal escape codes (uvicorn's color_message, Faust's
    # spinner) in a log file.
    redis = f"Redis redis://***@{srv.address}/0 (standalone)"
    worker_log, api_log = logs[0], logs[1]
    assert f"worker starting: Kafka {s.kafka_bootstrap} (" in worker_log
    assert redis in worker_log and "worker stopped cleanly" in worker_log
    assert (f"API starting on http://{s.api_host}:{s.api_port}: Kafka {s.kafka_bootstrap} "
            f"(PLAINTEXT), {redis}, auth on") in api_log
    assert "\x1b" not in worker_log and "\x1b" not in api_log
    for secret in (REDIS_PW, TRACK, READ, ADMIN, SASL_PW):
        for text in logs:
            assert secret not in text, f"{secret!r} leaked into a log"
