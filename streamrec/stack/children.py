"""The workers and API processes of ``streamrec up`` in the background: start, stop, ready."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from subprocess import Popen

from core.settings import Settings, env_for_child
from streamrec.stack import servers
from streamrec.stack.probes import (
    LOG_MARK,
    last_log_line,
    listens_on,
    log_size,
    worker_heartbeats,
)
from streamrec.stack.records import ProcessRecord, StackError, StackState, split_name

#: Seconds a stopped process gets to exit after SIGTERM before SIGKILL (``down --timeout``
#: overrides it; Apache Kafka gets longer: ``infra.stop_timeout``).
STOP_TIMEOUT_S = 10.0
#: Where the stack's API processes keep their metric values, under the state dir: they
#: share one port, so a scrape reaches any one of them and must see all
#: (:mod:`api.metrics`).
API_METRICS_DIR = "api-metrics"


def api_metrics_dir(settings: Settings, *, fresh: bool = False) -> Path:
    """The API processes' shared metrics directory (created); ``fresh``: no API process
    of the stack runs, so the values of earlier ones are dropped first."""
    path = Path(settings.state_dir) / API_METRICS_DIR
    if fresh and path.is_dir():
        for old in path.glob("*.db"):
            old.unlink(missing_ok=True)
    path.mkdir(parents=True, exist_ok=True)
    return path


def child_command(command: str) -> list[str]:
    """How ``up`` runs the worker or the API: this interpreter, this package's CLI."""
    return [sys.executable, "-m", "streamrec.cli", command]


def child_env(settings: Settings) -> dict[str, str]:
    """Environment for the worker/API: exactly ``settings`` plus the thread/buffer knobs."""
    env = env_for_child(settings)
    env["OPENBLAS_NUM_THREADS"] = env.get("OPENBLAS_NUM_THREADS") or "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def spawn_child(name: str, settings: Settings, log_dir: Path,
                address: str = "") -> tuple[ProcessRecord, Popen[bytes], int]:
    """Start the worker or the API detached, appending to its log file.

    Returns the record, the Popen, and the log offset where this run's output starts."""
    log_path = log_dir / f"{name}.log"
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as fh:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        fh.write(f"{LOG_MARK} starting {name} at {stamp} ----\n")
    since = log_size(log_path)
    cmd = child_command(split_name(name)[0])
    # cwd = the state dir: whatever a child writes relative to its cwd (Faust's
    # "<app id>-data" directory) stays under .streamrec instead of the user's directory.
    env = child_env(settings)
    if split_name(name)[0] == "api":
        from api.metrics import MULTIPROC_ENV

        env[MULTIPROC_ENV] = str(api_metrics_dir(settings))
    proc = servers.spawn(cmd, log_path=log_path, env=env, cwd=settings.state_dir)
    return ProcessRecord.for_pid(name, proc.pid, log_path, cmd, address), proc, since


def stop_record(rec: ProcessRecord, timeout: float = STOP_TIMEOUT_S) -> bool:
    """SIGTERM (then SIGKILL) one recorded process if it is still ours."""
    if not rec.is_ours():
        return False
    return servers.stop_pid(rec.pid, timeout=timeout)


def worker_heartbeat_for(state: StackState, name: str = "worker") -> tuple[str, dict[str, str]]:
    """(worker id, heartbeat) of the recorded worker process ``name``, or ("", {}) if none
    yet."""
    rec = state.processes.get(name)
    if rec is None or not state.redis_url:
        return "", {}
    return _heartbeat_of(state.redis_url, rec.pid)


def _heartbeat_of(redis_url: str, pid: int) -> tuple[str, dict[str, str]]:
    try:
        beats = worker_heartbeats(redis_url)
    except Exception:  # noqa: BLE001 - Redis not answering yet
        return "", {}
    for worker_id, beat in beats.items():
        if beat.get("pid") == str(pid):
            return worker_id, beat
    return "", {}


def api_ready(url: str) -> bool:
    """True when the API at ``url`` answers GET /readyz with 200 and its ``ready`` body.

    The body matters: a port picked free can be taken by another server first (a
    worker's metrics endpoint answers any GET with 200), and the API that lost it exits
    only after its imports."""
    import httpx

    try:
        resp = httpx.get(f"{url}/readyz", timeout=2.0, trust_env=False)
        return resp.status_code == 200 and resp.json().get("status") == "ready"
    except (httpx.HTTPError, ValueError, AttributeError):
        return False


def _exited(state: StackState, fresh: dict[str, tuple[Popen[bytes], int]],
            since: dict[str, int]) -> None:
    """Raise when a worker or API process stopped during startup, with its last log line."""
    for name, rec in state.processes.items():
        if rec.component not in ("worker", "api"):
            continue
        code = fresh[name][0].poll() if name in fresh else None
        if code is not None or not rec.is_ours():
            how = f"exited with code {code}" if code is not None else "stopped"
            last = last_log_line(Path(rec.log), since.get(name, 0))
            raise StackError(
                f"the {rec.label} {how} during startup" + (f": {last}" if last else "")
                + f" (full log: {rec.log}; `streamrec down` stops the rest)")


def _not_ready(state: StackState, ready: set[str]) -> list[str]:
    """Names of the worker and API processes not ready yet (checked until they are): a
    worker when its own heartbeat says ready=1, an API process once it listens on the
    shared port (it binds only after its startup) and the port answers /readyz."""
    waiting = []
    api_ok: bool | None = None
    for name, rec in state.processes.items():
        if name in ready or rec.component not in ("worker", "api"):
            continue
        if rec.component == "worker":
            ok = _heartbeat_of(state.redis_url, rec.pid)[1].get("ready") == "1"
        else:
            if api_ok is None:
                api_ok = api_ready(state.api_url)
            port = rec.port()
            ok = api_ok and (port is None or listens_on(rec.pid, port) is not False)
        if ok:
            ready.add(name)
        else:
            waiting.append(name)
    return waiting


def wait_ready(state: StackState, fresh: dict[str, tuple[Popen[bytes], int]],
               timeout_s: float) -> None:
    """Block until every worker's own heartbeat says ready=1 and every API process
    serves (GET /readyz is 200 and each process listens)."""
    deadline = time.monotonic() + timeout_s
    # Only this run's log lines explain a failure: kept processes' from now on.
    since = {name: fresh[name][1] if name in fresh else log_size(Path(rec.log))
             for name, rec in state.processes.items()}
    ready: set[str] = set()
    while True:
        _exited(state, fresh, since)
        waiting = _not_ready(state, ready)
        if not waiting:
            return
        if time.monotonic() > deadline:
            what = " and ".join(
                f"the {state.processes[n].label} (no ready heartbeat in Redis)"
                if state.processes[n].component == "worker"
                else f"the {state.processes[n].label} ({state.api_url}/readyz not 200)"
                for n in waiting)
            name = waiting[0]
            last = last_log_line(Path(state.processes[name].log), since.get(name, 0), 160)
            logs = ", ".join(state.processes[n].log for n in waiting)
            raise StackError(
                f"timed out after {timeout_s:.0f}s waiting for {what}"
                + (f"; its last log line: {last}" if last else "")
                + f"; see {logs} (`streamrec down` stops what was started)"
            )
        time.sleep(0.2)
