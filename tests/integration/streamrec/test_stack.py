"""``streamrec up`` / ``status`` / ``down`` as a user runs them: real Tansu, real
redis-server, the real worker and API as detached processes, driven through the CLI.

One stack per module (``up`` takes seconds); the tests run in file order and the last
one takes it down and checks that no process is left behind.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from core.net import free_port
from streamrec.stack.servers import pid_alive
from tests.polling import wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.e2e,
    pytest.mark.skipif(
        importlib.util.find_spec("stream.worker") is None
        or importlib.util.find_spec("api.server") is None,
        reason="stream.worker / api.server not written yet",
    ),
]

UP_BUDGET_S = 30.0  # `up` must take seconds (the worker joins in ~6 s on Tansu)


@dataclass
class Stack:
    """A stack started by `streamrec up` in its own directory."""

    cwd: Path
    env: dict[str, str]
    api_url: str
    seen_pids: set[int]

    def cli(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        """Run `python -m streamrec.cli ARGS` in the stack's directory."""
        return subprocess.run([sys.executable, "-m", "streamrec.cli", *args], cwd=self.cwd,
                              env=self.env, capture_output=True, text=True, timeout=timeout)

    def state(self) -> dict:  # type: ignore[type-arg]
        """The recorded state file."""
        return json.loads((self.cwd / ".streamrec" / "stack.json").read_text())

    def pids(self) -> dict[str, int]:
        """Recorded pid per component (also remembered for the final leak check)."""
        pids = {name: rec["pid"] for name, rec in self.state()["processes"].items()}
        self.seen_pids.update(pids.values())
        return pids

    def run_up(self, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
        """`streamrec up ARGS` (``args`` with its ``--timeout``); once more on a new API
        port when another process bound the picked one first (``free_port`` can only
        say it was free: another test process may pick the same number). A new stack
        gets one worker unless ``args`` ask for more (`up`'s default, one per core,
        would make the tests' stacks differ between machines); later ups keep its shape."""
        if "--workers" not in args and not (self.cwd / ".streamrec" / "stack.json").exists():
            args = (*args, "--workers", "1")
        res = self.cli("up", *args, timeout=timeout)
        if res.returncode != 0 and "Address already in use" in res.stderr:
            port = free_port()
            self.env["STREAMREC_API_PORT"] = str(port)
            self.api_url = f"http://127.0.0.1:{port}"
            res = self.cli("up", *args, timeout=timeout)  # the API only: the rest runs
        return res

    def up(self, *args: str, ready_s: float = 120.0) -> str:
        """`streamrec up ARGS`, which must succeed; its output."""
        t0 = time.monotonic()
        res = self.run_up("--timeout", str(ready_s), *args, timeout=ready_s + 180)
        assert res.returncode == 0, f"up failed:\n{res.stdout}\n{res.stderr}"
        self.pids()
        print(f"up {' '.join(args)} took {time.monotonic() - t0:.1f}s")
        return res.stdout

    def status(self, *, dead_ok: bool = False) -> dict:  # type: ignore[type-arg]
        """`streamrec status --json`, parsed; it must be ok, or with ``dead_ok`` (a test
        that killed a process) not ok only because recorded processes are dead."""
        res = self.cli("status", "--json", timeout=60)
        if dead_ok and res.returncode == 1:
            found = json.loads(res.stdout)
            assert set(found["errors"]) == {"processes"}, res.stdout + res.stderr
            return found  # type: ignore[no-any-return]
        assert res.returncode == 0, res.stdout + res.stderr
        return json.loads(res.stdout)  # type: ignore[no-any-return]


def _up(stack: Stack) -> tuple[subprocess.CompletedProcess[str], float]:
    t0 = time.monotonic()
    res = stack.run_up("--timeout", "60", timeout=120.0)
    elapsed = time.monotonic() - t0
    assert res.returncode == 0, f"up failed:\n{res.stdout}\n{res.stderr}"
    stack.pids()
    return res, elapsed


@contextmanager
def stack_in(cwd: Path, down_timeout: float = 60.0) -> Iterator[Stack]:
    """A stack in ``cwd`` with a free API port, the environment's STREAMREC_ settings
    left out; whatever it started is stopped at the end, even after a failure."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("STREAMREC_")}
    # below the ephemeral range: a port the kernel handed out could become the source
    # port of one of the stack's own connections before the API binds it (`up` then
    # fails: the port is in use)
    port = free_port()
    env.update(STREAMREC_STATE_DIR=str(cwd / ".streamrec"), STREAMREC_API_PORT=str(port),
               STREAMREC_RETRAIN_INTERVAL_S="0", OPENBLAS_NUM_THREADS="1")
    s = Stack(cwd=cwd, env=env, api_url=f"http://127.0.0.1:{port}", seen_pids=set())
    try:
        yield s
    finally:
        if (cwd / ".streamrec" / "stack.json").exists():
            s.pids()
            s.cli("down", timeout=down_timeout)
        for pid in s.seen_pids:  # never leave a process behind, even after a failure
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A fresh directory, embedded servers, a free API port; always cleaned up."""
    with stack_in(tmp_path_factory.mktemp("stack")) as s:
        yield s


def test_up_starts_everything_in_seconds(stack: Stack) -> None:
    res, elapsed = _up(stack)
    print(f"streamrec up took {elapsed:.1f}s")
    assert elapsed < UP_BUDGET_S
    for path in ("", "/docs", "/metrics"):
        assert f"{stack.api_url}{path}" in res.stdout
    state = stack.state()
    assert set(state["processes"]) == {"kafka", "redis", "worker", "api"}
    assert all(pid_alive(pid) for pid in stack.pids().values())
    assert "warning: the embedded Tansu broker keeps the log in memory" in res.stdout
    assert httpx.get(f"{stack.api_url}/readyz", timeout=5).status_code == 200
    assert (stack.cwd / ".streamrec" / "logs" / "worker.log").exists()


def test_status_json(stack: Stack) -> None:
    status = stack.status()
    assert status["lag"] == 0 and status["processed"] == 0
    assert status["model_version"] is None
    assert status["errors"] == {}
    assert all(c["alive"] for c in status["components"].values())
    worker_pid = stack.pids()["worker"]
    assert [w["pid"] for w in status["workers"] if w["ready"]] == [worker_pid]
    assert status["topics"]["events"]["partitions"] >= 1
    assert status["broker"]["kind"] == "tansu" and status["broker"]["brokers"] == 1
    assert sorted((p["role"], p["alive"]) for p in status["processes"]) == [
        ("api", True), ("redis", True), ("tansu", True), ("worker", True)]
    assert status["redis_maxmemory_bytes"] == 1024 * 1024 * 1024  # STREAMREC_REDIS_MAXMEMORY_MB
    assert status["redis_maxmemory_policy"] == "noeviction"
    assert status["redis_memory_alert"] is False
    metrics = httpx.get(f"{stack.api_url}/metrics", timeout=5).text
    assert "streamrec_redis_maxmemory_bytes 1.073741824e+09" in metrics
    assert "streamrec_redis_memory_alert 0.0" in metrics
    text = stack.cli("status")
    assert text.returncode == 0 and "Consumer group" in text.stdout
    assert "(Tansu" in text.stdout and "noeviction" in text.stdout


def test_up_again_changes_nothing(stack: Stack) -> None:
    before = stack.pids()
    res, elapsed = _up(stack)
    assert "already running" in res.stdout
    assert stack.pids() == before
    assert elapsed < 10


def test_up_restarts_a_killed_worker_only(stack: Stack) -> None:
    before = stack.pids()
    os.kill(before["worker"], signal.SIGKILL)
    wait_gone = time.monotonic() + 10
    while (seen := stack.cli("status", "--json", timeout=60)).returncode == 0:
        assert time.monotonic() < wait_gone, "status stayed ok with the worker killed"
        time.sleep(0.2)
    assert "worker" in json.loads(seen.stdout)["errors"]["processes"]
    res, elapsed = _up(stack)
    print(f"streamrec up after a killed worker took {elapsed:.1f}s")
    after = stack.pids()
    assert "worker" in res.stdout and after["worker"] != before["worker"]
    assert {k: v for k, v in after.items() if k != "worker"} == {
        k: v for k, v in before.items() if k != "worker"}


def test_up_replaces_a_dead_broker_and_its_dependents(stack: Stack) -> None:
    before = stack.pids()
    os.kill(before["kafka"], signal.SIGKILL)
    res, elapsed = _up(stack)
    print(f"streamrec up after a killed broker took {elapsed:.1f}s")
    after = stack.pids()
    assert "lost" in res.stdout  # says that the broker's data is gone
    assert after["redis"] == before["redis"]
    for name in ("kafka", "worker", "api"):
        assert after[name] != before[name]
    assert stack.status()["errors"] == {}


def test_worker_restart_after_traffic(stack: Stack) -> None:
    """The realistic case: the worker dies after it processed events (its tables have
    changelog records to recover) and `up` brings a new one to ready."""
    sim = stack.cli("simulate", "--events", "300", "--rate", "0", "--quiet", timeout=120)
    assert sim.returncode == 0, sim.stdout + sim.stderr
    wait_for(lambda: stack.status()["processed"] > 0, 30, "events processed", interval=0.5)
    before = stack.pids()
    os.kill(before["worker"], signal.SIGKILL)
    _, elapsed = _up(stack)
    print(f"streamrec up after killing a busy worker took {elapsed:.1f}s")
    assert stack.pids()["worker"] != before["worker"]


def test_down_stops_everything(stack: Stack) -> None:
    pids = stack.pids()
    res = stack.cli("down", timeout=60)
    assert res.returncode == 0, res.stderr
    for name in ("api", "worker", "redis", "kafka"):
        assert f"(pid {pids[name]})" in res.stdout
    assert not (stack.cwd / ".streamrec" / "stack.json").exists()
    leftovers = [pid for pid in stack.seen_pids if pid_alive(pid)]
    assert leftovers == []
    again = stack.cli("down")
    assert again.returncode == 0 and "nothing to stop" in again.stdout
    # children run in the state dir: nothing (e.g. Faust's data dir) lands beside it
    assert [p.name for p in stack.cwd.iterdir()] == [".streamrec"]
