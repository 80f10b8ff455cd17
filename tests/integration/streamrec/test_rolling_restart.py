"""``streamrec up --restart`` under traffic: every worker and API process is replaced by one
started with the new settings, the port never refuses a connection, every event that got a
202 meanwhile is counted exactly once, and `status` lists no heartbeat of a stopped worker.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from streamrec.stack.servers import pid_alive
from tests.integration.streamrec.test_stack import Stack
from tests.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.e2e]


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(entry.decode().partition("=")[::2] for entry in raw if b"=" in entry)


class _Traffic(threading.Thread):
    """Views of one item (own event ids) and list reads over new connections, each
    request retried until it succeeds; every failure is kept."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.accepted = url, 0
        self.failures: list[str] = []
        self.done = threading.Event()

    def _until_ok(self, method: str, path: str, ok: int, **kw: Any) -> None:
        while True:
            try:
                with httpx.Client(base_url=self.url, timeout=10) as http:
                    status = http.request(method, path, **kw).status_code
            except httpx.HTTPError as exc:
                status = -1
                self.failures.append(f"{method} {path}: {type(exc).__name__}")
            if status == ok:
                return
            if status != -1:
                self.failures.append(f"{method} {path}: {status}")

    def run(self) -> None:
        n = 0
        while not self.done.is_set():
            n += 1
            self._until_ok("POST", "/v1/events", 202, json={
                "event_id": f"roll-{n}", "type": "view", "user_id": f"roll-u{n % 7}",
                "item_id": "roll-item"})
            self.accepted += 1
            self._until_ok("GET", "/v1/popular?n=3", 200)
            self.done.wait(0.05)


def test_up_restart_replaces_every_process_while_serving(stack: Stack) -> None:
    stack.up()
    before = stack.pids()
    traffic = _Traffic(stack.api_url)
    traffic.start()
    try:
        wait_for(lambda: traffic.accepted >= 10, 30, "traffic flowing")
        stack.env["STREAMREC_LIST_SIZE"] = "50"  # a changed setting, to deploy
        out = stack.up("--restart")
        after = stack.pids()
        environs = {name: _environ(after[name]) for name in ("worker", "api")}
        # by hand: SIGTERM the worker, `up` starts it again; a worker that stopped
        # cleanly leaves no heartbeat behind (status would list it beside its successor)
        os.kill(after["worker"], signal.SIGTERM)
        wait_for(lambda: not pid_alive(after["worker"]), 20, "the worker stopped")
        workers = stack.status(dead_ok=True)["workers"]
        assert str(after["worker"]) not in [str(w["pid"]) for w in workers], workers
        assert "is gone: starting it again" in stack.up()
        wait_for(lambda: traffic.accepted >= 10 + 10, 30, "traffic after the restart")
    finally:
        traffic.done.set()
        traffic.join(30)
    assert "nothing started" not in out
    for label in ("worker", "API"):
        assert f"restarting the {label} (pid" in out, out
    for name in ("worker", "api"):
        assert after[name] != before[name], f"{name} not replaced"
        assert environs[name]["STREAMREC_LIST_SIZE"] == "50"
    assert (after["kafka"], after["redis"]) == (before["kafka"], before["redis"])
    assert traffic.failures == [], "a request failed during the rolling restart"

    def counted() -> int:
        stats = httpx.get(f"{stack.api_url}/v1/admin/items/roll-item/stats", timeout=5)
        return int(stats.json()["views"]) if stats.status_code == 200 else -1

    wait_for(lambda: counted() == traffic.accepted, 60,
             f"{traffic.accepted} accepted views counted", interval=0.5)
    status = wait_for(lambda: (s := stack.status())["lag"] == 0 and s, 30, "lag 0")
    live = [w for w in status["workers"] if not w["stale"]]
    assert [str(w["pid"]) for w in live] == [str(stack.pids()["worker"])]
    assert live[0]["partitions"] == "0,1,2,3"
