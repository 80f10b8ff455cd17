"""The worker and the API as background processes of ``streamrec up``: start, stop, ready."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from subprocess import Popen

from core.settings import Settings, env_for_child
from streamrec.stack import servers
from streamrec.stack.probes import LOG_MARK, last_log_line, log_size, worker_heartbeats
from streamrec.stack.records import ProcessRecord, StackError, StackState

STOP_TIMEOUT_S = 10.0


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
    cmd = child_command(name)
    # cwd = the state dir: whatever a child writes relative to its cwd (Faust's
    # "<app id>-data" directory) stays under .streamrec instead of the user's directory.
    proc = servers.spawn(cmd, log_path=log_path, env=child_env(settings),
                         cwd=settings.state_dir)
    return ProcessRecord.for_pid(name, proc.pid, log_path, cmd, address), proc, since


def stop_record(rec: ProcessRecord, timeout: float = STOP_TIMEOUT_S) -> bool:
    """SIGTERM (then SIGKILL) one recorded process if it is still ours."""
    if not rec.is_ours():
        return False
    return servers.stop_pid(rec.pid, timeout=timeout)


def worker_heartbeat_for(state: StackState) -> tuple[str, dict[str, str]]:
    """(worker id, heartbeat) of the recorded worker process, or ("", {}) if none yet."""
    rec = state.processes.get("worker")
    if rec is None or not state.redis_url:
        return "", {}
    try:
        beats = worker_heartbeats(state.redis_url)
    except Exception:  # noqa: BLE001 - Redis not answering yet
        return "", {}
    for worker_id, beat in beats.items():
        if beat.get("pid") == str(rec.pid):
            return worker_id, beat
    return "", {}


def api_ready(url: str) -> bool:
    """True when the API at ``url`` answers GET /readyz with 200."""
    import httpx

    try:
        return httpx.get(f"{url}/readyz", timeout=2.0, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def _exited(state: StackState, fresh: dict[str, tuple[Popen[bytes], int]],
            since: dict[str, int]) -> None:
    """Raise when the worker or the API stopped during startup, with its last log line."""
    for name in ("worker", "api"):
        rec = state.processes[name]
        code = fresh[name][0].poll() if name in fresh else None
        if code is not None or not rec.is_ours():
            how = f"exited with code {code}" if code is not None else "stopped"
            last = last_log_line(Path(rec.log), since.get(name, 0))
            raise StackError(
                f"the {rec.label} {how} during startup" + (f": {last}" if last else "")
                + f" (full log: {rec.log}; `streamrec down` stops the rest)")


def wait_ready(state: StackState, fresh: dict[str, tuple[Popen[bytes], int]],
               timeout_s: float) -> None:
    """Block until GET /readyz is 200 and the worker's own heartbeat says ready=1."""
    deadline = time.monotonic() + timeout_s
    # Only this run's log lines explain a failure: kept processes' from now on.
    since = {name: fresh[name][1] if name in fresh else log_size(Path(rec.log))
             for name, rec in state.processes.items()}
    api_ok = worker_ok = False
    while True:
        _exited(state, fresh, since)
        api_ok = api_ok or api_ready(state.api_url)
        worker_ok = worker_ok or worker_heartbeat_for(state)[1].get("ready") == "1"
        if api_ok and worker_ok:
            return
        if time.monotonic() > deadline:
            waiting = [n for n, ok in (("worker", worker_ok), ("api", api_ok)) if not ok]
            what = " and ".join(
                "the worker (no ready heartbeat in Redis)" if n == "worker"
                else f"the API ({state.api_url}/readyz not 200)" for n in waiting
            )
            name = waiting[0]
            last = last_log_line(Path(state.processes[name].log), since.get(name, 0), 160)
            logs = ", ".join(state.processes[n].log for n in waiting)
            raise StackError(
                f"timed out after {timeout_s:.0f}s waiting for {what}"
                + (f"; its last log line: {last}" if last else "")
                + f"; see {logs} (`streamrec down` stops what was started)"
            )
        time.sleep(0.2)
