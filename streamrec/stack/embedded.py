"""The embedded stack: ``streamrec up`` / ``streamrec down`` on one machine, no Docker.

``up`` starts, as detached background processes, a Tansu broker and a redis-server (each
unless an external one is configured through the environment), creates the topics, and
starts one Faust worker and the API. It returns once the API answers ``/readyz`` and the
worker's Redis heartbeat says it consumes. Everything started is recorded in
``<state_dir>/stack.json`` so that

* ``down`` stops exactly those processes and nothing else;
* ``up`` run again is idempotent: it keeps what still runs and restarts only what died
  (a new broker means the old one's memory-only data is gone, so its dependents restart);
* other commands (``status``, ``train``, ``simulate``) find the stack's addresses
  without any exported variable (``Settings.with_stack_defaults``).

Processes are identified by pid *and* kernel start time, so a recycled pid is never
mistaken for ours (and never signalled).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from subprocess import Popen
from typing import Any

from core import net
from core.redis_keys import RedisKeys
from core.settings import Settings, env_for_child
from streamrec.stack import servers

STATE_VERSION = 1
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0

#: Start order; ``down`` stops in reverse (API, worker, then Redis, broker).
COMPONENTS = ("kafka", "redis", "worker", "api")
LABELS = {"kafka": "Kafka broker (Tansu)", "redis": "redis-server", "worker": "worker",
          "api": "API"}

Echo = Callable[[str], None]
_LOG_MARK = "---- streamrec up:"


def print_line(message: str) -> None:
    """Default ``echo``: print and flush now; a closed pipe (``streamrec up | head -1``)
    must not abort ``up`` halfway, so further output is dropped instead."""
    try:
        print(message, flush=True)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


class StackError(RuntimeError):
    """A problem the user can fix; the message is one line and says how."""


# --------------------------------------------------------------------------- records


def _proc_start_time(pid: int) -> int | None:
    """Kernel start time of ``pid`` (clock ticks since boot), or None where /proc is absent."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


@dataclass
class ProcessRecord:
    """One background process ``up`` started."""

    name: str
    pid: int
    log: str
    cmd: list[str] = field(default_factory=list)
    address: str = ""
    started_at: float = 0.0
    proc_start: int | None = None

    @classmethod
    def for_pid(cls, name: str, pid: int, log: Path, cmd: list[str],
                address: str = "") -> ProcessRecord:
        """Record a process that was just started."""
        return cls(name=name, pid=pid, log=str(log), cmd=list(cmd), address=address,
                   started_at=time.time(), proc_start=_proc_start_time(pid))

    def is_ours(self) -> bool:
        """True while ``pid`` is still the process we started (not a recycled pid)."""
        if not servers.pid_alive(self.pid):
            return False
        if self.proc_start is None:
            return True
        current = _proc_start_time(self.pid)
        return current is None or current == self.proc_start

    def alive(self) -> bool:
        """The process runs and, for a server, still accepts connections."""
        if not self.is_ours():
            return False
        if self.name in ("kafka", "redis") and self.address:
            host, _, port = self.address.rpartition(":")
            return net.port_open(host, int(port), timeout=1.0)
        return True


@dataclass
class StackState:
    """What ``up`` started and where it listens; saved as JSON at ``settings.state_file``.

    ``kafka_bootstrap`` and ``redis_url`` are top-level keys on purpose: ``Settings``
    reads exactly those to find the stack.
    """

    kafka_bootstrap: str = ""
    redis_url: str = ""
    kafka_external: bool = False
    redis_external: bool = False
    api_url: str = ""
    worker_metrics_url: str = ""
    log_dir: str = ""
    processes: dict[str, ProcessRecord] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0
    version: int = STATE_VERSION

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StackState:
        """Inverse of ``to_dict``; unknown keys are ignored (forward compatible)."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        procs = known.pop("processes", {}) or {}
        fields = ProcessRecord.__dataclass_fields__
        state = cls(**known)
        state.processes = {
            name: ProcessRecord(**{k: v for k, v in rec.items() if k in fields})
            for name, rec in procs.items()
        }
        return state

    def alive_components(self) -> dict[str, bool]:
        """Which recorded processes still run."""
        return {name: rec.alive() for name, rec in self.processes.items()}


def load_state(settings: Settings) -> StackState | None:
    """The recorded stack, or None when ``up`` never ran here (or the file is unreadable)."""
    try:
        data = json.loads(settings.state_file.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    try:
        return StackState.from_dict(data)
    except (TypeError, ValueError):
        return None


def save_state(settings: Settings, state: StackState) -> None:
    """Write the state file atomically (readers never see half a file)."""
    state.updated_at = time.time()
    order = {name: i for i, name in enumerate(COMPONENTS)}
    state.processes = dict(sorted(state.processes.items(), key=lambda kv: order.get(kv[0], 99)))
    path = settings.state_file
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state.to_dict(), indent=2) + "\n")
    os.replace(tmp, path)


@contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    """Exclusive lock so two ``up``/``down`` in one directory cannot interleave."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / "stack.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StackError(
                f"another `streamrec up` or `down` is running for {state_dir}; wait for it"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- helpers


def _port_bindable(host: str, port: int) -> bool:
    """True when a server could listen on host:port now (SO_REUSEADDR, like servers do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _connect_host(host: str) -> str:
    """Where a client on this machine reaches a server bound to ``host``."""
    return "127.0.0.1" if host in ("", "0.0.0.0", "::") else host


def _log_size(path: Path) -> int:
    """Current size of a log file (0 if absent): where this run's lines start."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _last_log_line(path: Path, since: int = 0, limit: int = 200) -> str:
    """The last non-empty line written to a log after byte ``since``, shortened (for
    one-line error messages; earlier runs' lines are not this run's reason)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(since, fh.tell() - 8192))
            lines = [ln.strip() for ln in fh.read().decode("utf-8", "replace").splitlines()]
    except OSError:
        return ""
    lines = [ln for ln in lines if ln and not ln.startswith(_LOG_MARK)]
    if not lines:
        return ""
    line = lines[-1]
    return line if len(line) <= limit else line[: limit - 1] + "…"


def bootstrap_reachable(bootstrap: str) -> bool:
    """True when at least one bootstrap server accepts TCP connections."""
    return net.bootstrap_reachable(bootstrap)


def _redis_client(url: str) -> Any:
    """A Redis client with short timeouts (startup checks must not hang)."""
    import redis

    return redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0,
                                decode_responses=True)


def _redis_reachable(url: str) -> bool:
    """True when Redis at ``url`` answers PING."""
    client = _redis_client(url)
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001 - any failure means unreachable
        return False
    finally:
        client.close()


def worker_heartbeats(redis_url: str) -> dict[str, dict[str, str]]:
    """Every worker heartbeat hash in Redis, by worker id."""
    keys = RedisKeys()
    prefix = keys.worker("")
    client = _redis_client(redis_url)
    try:
        result: dict[str, dict[str, str]] = {}
        for key in client.scan_iter(match=keys.worker_pattern, count=100):
            data = client.hgetall(key)
            if data:
                result[key[len(prefix):]] = data
        return result
    finally:
        client.close()


def _child_command(command: str) -> list[str]:
    """How ``up`` runs the worker or the API: this interpreter, this package's CLI."""
    return [sys.executable, "-m", "streamrec.cli", command]


def _child_env(settings: Settings) -> dict[str, str]:
    """Environment for the worker/API: exactly ``settings`` plus the thread/buffer knobs."""
    env = env_for_child(settings)
    env["OPENBLAS_NUM_THREADS"] = env.get("OPENBLAS_NUM_THREADS") or "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _spawn_child(name: str, settings: Settings, log_dir: Path,
                 address: str = "") -> tuple[ProcessRecord, Popen[bytes], int]:
    """Start the worker or the API detached, appending to its log file.

    Returns the record, the Popen, and the log offset where this run's output starts."""
    log_path = log_dir / f"{name}.log"
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a") as fh:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        fh.write(f"{_LOG_MARK} starting {name} at {stamp} ----\n")
    since = _log_size(log_path)
    cmd = _child_command(name)
    # cwd = the state dir: whatever a child writes relative to its cwd (Faust's
    # "<app id>-data" directory) stays under .streamrec instead of the user's directory.
    proc = servers.spawn(cmd, log_path=log_path, env=_child_env(settings),
                         cwd=settings.state_dir)
    return ProcessRecord.for_pid(name, proc.pid, log_path, cmd, address), proc, since


def _stop(rec: ProcessRecord, timeout: float = STOP_TIMEOUT_S) -> bool:
    """SIGTERM (then SIGKILL) one recorded process if it is still ours."""
    if not rec.is_ours():
        return False
    return servers.stop_pid(rec.pid, timeout=timeout)


# --------------------------------------------------------------------------- up


def _external(var: str, override: bool | None) -> bool:
    return bool(os.environ.get(var)) if override is None else override


def up(settings: Settings, *, timeout_s: float = READY_TIMEOUT_S, echo: Echo = print_line,
       external_kafka: bool | None = None, external_redis: bool | None = None) -> StackState:
    """Start (or complete) the embedded stack and wait until it serves; see module doc.

    ``external_kafka``/``external_redis`` default to whether ``STREAMREC_KAFKA_BOOTSTRAP`` /
    ``STREAMREC_REDIS_URL`` is set in the environment; then ``settings``' address is used
    and no server is started. Raises ``StackError`` (one line, says what to do) or
    ``servers.PrerequisiteMissing``.
    """
    t0 = time.monotonic()
    state_dir = settings.state_dir.resolve()
    settings = settings.model_copy(update={"state_dir": state_dir})
    log_dir = state_dir / "logs"
    with _locked(state_dir):
        old = load_state(settings) or StackState()
        state = _bring_up(settings, old, log_dir, echo,
                          _external("STREAMREC_KAFKA_BOOTSTRAP", external_kafka),
                          _external("STREAMREC_REDIS_URL", external_redis), timeout_s)
    elapsed = time.monotonic() - t0
    echo(format_summary(state, elapsed_s=elapsed))
    return state


def _bring_up(settings: Settings, old: StackState, log_dir: Path, echo: Echo,
              external_kafka: bool, external_redis: bool, timeout_s: float) -> StackState:
    """The body of ``up``, under the lock."""
    alive = {name: rec for name, rec in old.processes.items() if rec.alive()}
    for name, rec in old.processes.items():
        if name not in alive and rec.is_ours():  # runs but does not listen: replace it
            echo(f"{LABELS.get(name, name)} (pid {rec.pid}) does not answer; restarting it")
            _stop(rec)
    already = bool(old.processes) and len(alive) == len(old.processes) and (
        {"worker", "api"} <= set(alive)
    )

    # Fail before starting anything when prerequisites or the API port are missing.
    if not external_kafka and "kafka" not in alive:
        servers.tansu_binary()
    if not external_redis and "redis" not in alive:
        servers.redis_binary()
    api_host = settings.api_host
    api_port = settings.api_port
    if "api" in alive:
        api_port = int(alive["api"].address.rpartition(":")[2] or api_port)
        if settings.api_port not in (0, api_port):
            echo(f"the API keeps running on port {api_port}; run `streamrec down` first "
                 f"to move it to port {settings.api_port}")
    elif api_port == 0:
        api_port = net.free_port(_connect_host(api_host))
    elif not _port_bindable(api_host, api_port):
        raise StackError(
            f"port {api_port} on {api_host} is already in use by another program; "
            f"set STREAMREC_API_PORT to a free port (e.g. STREAMREC_API_PORT="
            f"{net.free_port()}) and run `streamrec up` again"
        )

    state = StackState(created_at=old.created_at or time.time(), log_dir=str(log_dir),
                       kafka_external=external_kafka, redis_external=external_redis)
    state.processes = dict(alive)  # until replaced below, so `down` always sees them
    restart_dependents = False

    # --- Kafka -----------------------------------------------------------------------
    if external_kafka:
        state.kafka_bootstrap = settings.kafka_bootstrap
        if "kafka" in alive:  # switched from embedded to external: stop our broker
            echo("STREAMREC_KAFKA_BOOTSTRAP is set: stopping the embedded broker")
            _stop(alive["kafka"])
            state.processes.pop("kafka", None)
        if not bootstrap_reachable(state.kafka_bootstrap):
            raise StackError(
                f"cannot reach Kafka at {state.kafka_bootstrap} (STREAMREC_KAFKA_BOOTSTRAP); "
                "start it, or unset the variable to use the embedded broker"
            )
    elif "kafka" in alive:
        state.kafka_bootstrap = alive["kafka"].address
    else:
        gone = old.processes.get("kafka")
        if gone is not None:
            echo(f"the Kafka broker (pid {gone.pid}) is gone; it kept everything in memory, "
                 "so its topics, events and consumer offsets are lost: starting a new one "
                 "and restarting the worker and the API")
            restart_dependents = True
        rec = _start_server("kafka", log_dir, gone)
        state.processes["kafka"] = rec
        state.kafka_bootstrap = rec.address
    # --- Redis -----------------------------------------------------------------------
    if external_redis:
        state.redis_url = settings.redis_url
        if "redis" in alive:
            echo("STREAMREC_REDIS_URL is set: stopping the embedded redis-server")
            _stop(alive["redis"])
            state.processes.pop("redis", None)
        if not _redis_reachable(state.redis_url):
            raise StackError(
                f"cannot reach Redis at {mask_url(state.redis_url)} (STREAMREC_REDIS_URL); "
                "start it, or unset the variable to use the embedded redis-server"
            )
    elif "redis" in alive:
        state.redis_url = f"redis://{alive['redis'].address}/0"
    else:
        gone = old.processes.get("redis")
        if gone is not None:
            echo(f"redis-server (pid {gone.pid}) is gone and with it the prepared lists "
                 "(memory only): starting a new one; lists refill as events arrive")
        rec = _start_server("redis", log_dir, gone)
        state.processes["redis"] = rec
        state.redis_url = f"redis://{rec.address}/0"
    if (old.kafka_bootstrap and old.kafka_bootstrap != state.kafka_bootstrap) or (
        old.redis_url and old.redis_url != state.redis_url
    ):
        restart_dependents = True
    save_state(settings, state)  # from here on, `down` can clean up whatever follows

    child_settings = settings.model_copy(update={
        "kafka_bootstrap": state.kafka_bootstrap, "redis_url": state.redis_url,
        "api_port": api_port,
    })
    from core.kafka_tools import create_topics

    created = create_topics(child_settings)
    if created:
        echo(f"created topics: {', '.join(created)}")

    # --- worker and API --------------------------------------------------------------
    state.api_url = f"http://{_connect_host(api_host)}:{api_port}"
    fresh: dict[str, tuple[Popen[bytes], int]] = {}
    for name in ("worker", "api"):
        rec_old = alive.get(name)
        if rec_old is not None and not restart_dependents:
            state.processes[name] = rec_old
            continue
        if rec_old is not None:
            echo(f"restarting the {LABELS[name]} (pid {rec_old.pid}) against the new servers")
            _stop(rec_old)
        elif name in old.processes:
            echo(f"the {LABELS[name]} (pid {old.processes[name].pid}) is gone: starting it again")
        address = f"{_connect_host(api_host)}:{api_port}" if name == "api" else ""
        rec, proc, since = _spawn_child(name, child_settings, log_dir, address)
        state.processes[name] = rec
        fresh[name] = (proc, since)
        save_state(settings, state)

    if already and not fresh and not restart_dependents:
        echo("everything was already running; nothing started")
    _wait_ready(state, fresh, timeout_s)
    metrics_port = worker_heartbeat_for(state)[1].get("metrics_port", "")
    if metrics_port and metrics_port not in ("0", ""):
        state.worker_metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    save_state(settings, state)
    return state


def _start_server(name: str, log_dir: Path, previous: ProcessRecord | None) -> ProcessRecord:
    """Start the broker or Redis, on its previous port when that port is free."""
    port: int | None = None
    if previous is not None and previous.address:
        host, _, old_port = previous.address.rpartition(":")
        if old_port.isdigit() and _port_bindable(host, int(old_port)):
            port = int(old_port)
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / ("tansu.log" if name == "kafka" else "redis.log")
    since = _log_size(log)
    try:
        if name == "kafka":
            srv = servers.start_tansu(log_dir, port=port)
        else:
            srv = servers.start_redis(log_dir, port=port)
    except (RuntimeError, TimeoutError, OSError) as exc:
        if isinstance(exc, servers.PrerequisiteMissing):
            raise
        last = _last_log_line(log, since)
        raise StackError(
            f"the {LABELS[name]} did not start ({exc})" + (f": {last}" if last else "")
            + f" (log: {log})"
        ) from None
    cmd = ["tansu", "broker"] if name == "kafka" else ["redis-server"]
    return ProcessRecord.for_pid(name, srv.pid, srv.log_path, cmd, srv.address)


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


def _api_ready(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/readyz", timeout=2.0, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def _wait_ready(state: StackState, fresh: dict[str, tuple[Popen[bytes], int]],
                timeout_s: float) -> None:
    """Block until GET /readyz is 200 and the worker's own heartbeat says ready=1."""
    deadline = time.monotonic() + timeout_s
    # Only this run's log lines explain a failure: kept processes' from now on.
    since = {name: fresh[name][1] if name in fresh else _log_size(Path(rec.log))
             for name, rec in state.processes.items()}
    api_ok = worker_ok = False
    while True:
        for name in ("worker", "api"):
            rec = state.processes[name]
            code = fresh[name][0].poll() if name in fresh else None
            if code is not None or not rec.is_ours():
                how = f"exited with code {code}" if code is not None else "stopped"
                last = _last_log_line(Path(rec.log), since.get(name, 0))
                raise StackError(
                    f"the {LABELS[name]} {how} during startup"
                    + (f": {last}" if last else "")
                    + f" (full log: {rec.log}; `streamrec down` stops the rest)"
                )
        api_ok = api_ok or _api_ready(state.api_url)
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
            last = _last_log_line(Path(state.processes[name].log), since.get(name, 0), 160)
            logs = ", ".join(state.processes[n].log for n in waiting)
            raise StackError(
                f"timed out after {timeout_s:.0f}s waiting for {what}"
                + (f"; its last log line: {last}" if last else "")
                + f"; see {logs} (`streamrec down` stops what was started)"
            )
        time.sleep(0.2)


def mask_url(url: str) -> str:
    """A URL with any password replaced by ***."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


def format_summary(state: StackState, *, elapsed_s: float | None = None) -> str:
    """What ``up`` prints: where everything listens and how to stop it."""
    head = "streamrec is up" + (f" ({elapsed_s:.1f}s)" if elapsed_s is not None else "")
    kafka_kind = "external" if state.kafka_external else "embedded Tansu, memory only"
    redis_kind = "external" if state.redis_external else "embedded"
    rows = [
        ("API", state.api_url),
        ("API docs", f"{state.api_url}/docs"),
        ("API metrics", f"{state.api_url}/metrics"),
    ]
    if state.worker_metrics_url:
        rows.append(("worker metrics", state.worker_metrics_url))
    rows += [
        ("Kafka", f"{state.kafka_bootstrap} ({kafka_kind})"),
        ("Redis", f"{mask_url(state.redis_url)} ({redis_kind})"),
        ("logs", state.log_dir),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [head] + [f"  {k.ljust(width)}  {v}" for k, v in rows]
    lines.append("check with `streamrec status`, stop with `streamrec down`")
    return "\n".join(lines)


# --------------------------------------------------------------------------- down


def down(settings: Settings, *, echo: Echo = print_line,
         timeout_s: float = STOP_TIMEOUT_S) -> list[str]:
    """Stop exactly what ``up`` recorded (API, worker, Redis, broker) and forget it.

    Returns the names of the components that were running and got stopped. Safe when
    nothing runs or ``up`` never ran.
    """
    settings = settings.model_copy(update={"state_dir": settings.state_dir.resolve()})
    if not settings.state_file.exists():
        echo(f"nothing to stop: no stack recorded in {settings.state_dir}")
        return []
    stopped: list[str] = []
    with _locked(settings.state_dir):
        state = load_state(settings)
        if state is None:
            echo(f"unreadable state file {settings.state_file}; removing it")
            settings.state_file.unlink(missing_ok=True)
            return []
        for name in reversed(COMPONENTS):
            rec = state.processes.get(name)
            if rec is None:
                continue
            label = LABELS.get(name, name)
            if not servers.pid_alive(rec.pid):
                echo(f"{label} (pid {rec.pid}) was not running")
            elif not rec.is_ours():
                echo(f"pid {rec.pid} now belongs to another program; left it alone")
            else:
                _stop(rec, timeout_s)
                stopped.append(name)
                echo(f"stopped {label} (pid {rec.pid})")
        settings.state_file.unlink(missing_ok=True)
    if not stopped:
        echo("nothing was running")
    return stopped
