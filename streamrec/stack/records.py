"""What ``streamrec up`` started, kept in ``<state_dir>/stack.json``.

Processes are identified by pid *and* kernel start time, so a recycled pid is never
mistaken for ours (and never signalled). The file is written atomically and guarded by a
lock file, so two ``up``/``down`` in one directory cannot interleave.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core import stack_processes
from core.broker import APACHE_KAFKA, TANSU
from core.settings import Settings

STATE_VERSION = 1
#: Start order; ``down`` stops in reverse (API, worker, then Redis, broker). A component
#: may run as several processes: the first is recorded under its component's name, the
#: others as ``<component>-<i>`` (``kafka-2``, ``worker-3``, ``api-2``; see member_name).
COMPONENTS = ("kafka", "redis", "worker", "api")
#: ``ProcessRecord.kind`` of a Redis that keeps an append-only file / only memory.
REDIS_AOF, REDIS_MEMORY = "aof", "memory"

Echo = Callable[[str], None]


def member_name(component: str, index: int) -> str:
    """The record name of the ``index``-th (1-based) process of ``component``."""
    return component if index == 1 else f"{component}-{index}"


def split_name(name: str) -> tuple[str, int]:
    """``(component, index)`` of a record name: ``"kafka-2"`` → ``("kafka", 2)``."""
    component, _, index = name.partition("-")
    return component, int(index) if index.isdigit() else 1


def members(processes: dict[str, ProcessRecord], component: str) -> list[ProcessRecord]:
    """The recorded processes of one component, by index."""
    found = [rec for name, rec in processes.items() if split_name(name)[0] == component]
    return sorted(found, key=lambda rec: split_name(rec.name)[1])


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


@dataclass
class ProcessRecord:
    """One background process ``up`` started.

    ``kind`` says which server it is where there is a choice: ``tansu`` or
    ``apache-kafka`` for the broker, ``aof`` or ``memory`` for Redis. ``version`` is the
    broker's, ``control_address`` a KRaft node's controller listener (reused on restart).
    """

    name: str
    pid: int
    log: str
    cmd: list[str] = field(default_factory=list)
    address: str = ""
    started_at: float = 0.0
    proc_start: int | None = None
    kind: str = ""
    version: str = ""
    control_address: str = ""

    @classmethod
    def for_pid(cls, name: str, pid: int, log: Path, cmd: list[str], address: str = "",
                **extra: str) -> ProcessRecord:
        """Record a process that was just started."""
        return cls(name=name, pid=pid, log=str(log), cmd=list(cmd), address=address,
                   started_at=time.time(),
                   proc_start=stack_processes.proc_start_time(pid), **extra)

    @property
    def broker_kind(self) -> str:
        """``apache-kafka`` or ``tansu`` (records from before the choice are Tansu)."""
        return APACHE_KAFKA if self.kind == APACHE_KAFKA else TANSU

    @property
    def component(self) -> str:
        """kafka, redis, worker or api, whichever member of it this process is."""
        return split_name(self.name)[0]

    @property
    def index(self) -> int:
        """1 for a component's first process, 2 for ``<component>-2``, ..."""
        return split_name(self.name)[1]

    @property
    def role(self) -> str:
        """The role ``streamrec status`` names: kafka-broker, tansu, redis, worker or api."""
        return stack_processes.role_of(self.component, self.kind)

    @property
    def label(self) -> str:
        """How messages name it (``worker 2`` for the second of several)."""
        number = "" if self.index == 1 else f" {self.index}"
        if self.component == "kafka":
            kind = "Apache Kafka" if self.broker_kind == APACHE_KAFKA else "Tansu"
            return f"Kafka broker{number} ({kind})"
        base = {"redis": "redis-server", "worker": "worker", "api": "API"}.get(
            self.component, self.component)
        return base + number

    def port(self) -> int | None:
        """The port of ``address``, or None."""
        port = self.address.rpartition(":")[2]
        return int(port) if port.isdigit() else None

    def is_ours(self) -> bool:
        """True while ``pid`` is still the process we started (not a recycled pid)."""
        return stack_processes.is_ours(self.pid, self.proc_start)

    def alive(self) -> bool:
        """The process runs and, for a server, still accepts connections."""
        return stack_processes.record_alive(self.component, self.pid, self.proc_start,
                                            self.address)


@dataclass
class StackState:
    """What ``up`` started and where it listens; saved as JSON at ``settings.state_file``.

    ``kafka_bootstrap``, ``redis_url`` and ``redis_mode`` are top-level keys on purpose:
    ``Settings`` reads exactly those to find the stack.
    """

    kafka_bootstrap: str = ""
    redis_url: str = ""
    #: ``standalone`` or ``cluster`` (``Settings.redis_mode`` reads it too).
    redis_mode: str = "standalone"
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


def start_order(name: str) -> tuple[int, int]:
    """Sort key of a record name: by component (COMPONENTS), then by index."""
    component, index = split_name(name)
    order = COMPONENTS.index(component) if component in COMPONENTS else len(COMPONENTS)
    return order, index


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
    """Write the state file atomically (readers never see half a file), readable by its
    owner only: with an external Redis its ``redis_url`` holds the password."""
    state.updated_at = time.time()
    state.processes = dict(sorted(state.processes.items(), key=lambda kv: start_order(kv[0])))
    path = settings.state_file
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a leftover temporary file keeps its mode through O_CREAT
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps(state.to_dict(), indent=2) + "\n")
    os.replace(tmp, path)


@contextmanager
def locked(state_dir: Path) -> Iterator[None]:
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
