"""The processes ``streamrec up`` recorded in ``<state_dir>/stack.json``, and whether each
still runs: the ``components`` and ``processes`` of ``streamrec status --json`` and of the
dashboard (``GET /v1/admin/dashboard``), and ``errors.processes`` when one has died.

Both read it, so it lives here rather than next to the code that writes the file
(``streamrec.stack.records``): a worker killed with SIGKILL leaves no trace elsewhere once
its heartbeat expires (~15 s), and the dashboard must say so as ``streamrec status`` does.
A deployment not started by ``up`` (compose, a process manager) has no file: no processes
are listed and none is reported dead.

A process is identified by pid *and* kernel start time, so a recycled pid never passes
for ours; a broker or Redis must also still accept connections.
"""

from __future__ import annotations

import json
import os
from typing import Any

from core import net
from core.broker import APACHE_KAFKA, TANSU
from core.settings import Settings


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists (and is not a zombie of ours)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def proc_start_time(pid: int) -> int | None:
    """Kernel start time of ``pid`` (clock ticks since boot), or None where /proc is absent."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return int(fh.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def component_of(name: str) -> str:
    """The component of a record name: ``"worker-2"`` → ``"worker"``."""
    return name.partition("-")[0]


def role_of(component: str, kind: str) -> str:
    """The role status names: kafka-broker, tansu, redis, worker or api (broker records
    from before the broker choice have no ``kind`` and are Tansu)."""
    if component == "kafka":
        return "kafka-broker" if kind == APACHE_KAFKA else "tansu"
    return component


def is_ours(pid: int, proc_start: int | None) -> bool:
    """True while ``pid`` is still the process that was started (not a recycled pid)."""
    if not pid_alive(pid):
        return False
    if proc_start is None:
        return True
    current = proc_start_time(pid)
    return current is None or current == proc_start


def record_alive(component: str, pid: int, proc_start: int | None, address: str) -> bool:
    """The process runs and, for a server, still accepts connections."""
    if not is_ours(pid, proc_start):
        return False
    if component in ("kafka", "redis") and address:
        host, _, port = address.rpartition(":")
        return net.port_open(host, int(port), timeout=1.0)
    return True


def recorded_components(settings: Settings) -> dict[str, Any]:
    """The processes ``streamrec up`` recorded for ``settings.state_dir``, by record name,
    and whether each still runs (``version``: the exact version of a broker it started);
    ``{}`` when there is no readable record."""
    try:
        data = json.loads(settings.state_file.read_text())
        records = data.get("processes") or {}
    except (OSError, ValueError, AttributeError):
        return {}
    out: dict[str, Any] = {}
    for name, rec in records.items() if isinstance(records, dict) else ():
        try:
            pid, component = int(rec["pid"]), component_of(str(name))
            address = str(rec.get("address") or "")
            alive = record_alive(component, pid, rec.get("proc_start"), address)
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
        out[str(name)] = {"role": role_of(component, str(rec.get("kind") or "")),
                          "pid": pid, "alive": alive, "address": address,
                          "log": rec.get("log") or "", "version": rec.get("version") or None}
    return out


def processes_of(components: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``processes`` list, one entry per recorded process (every broker node, worker
    and API process): name, role, pid, alive, address."""
    return [{"name": name, "role": c["role"], "pid": c["pid"], "alive": c["alive"],
             "address": c["address"]} for name, c in components.items()]


def stopped_processes(processes: list[dict[str, Any]]) -> str | None:
    """The ``errors`` entry for recorded processes that no longer run, or None: a stack
    with a dead worker or API process is not ok even when Kafka and Redis answer (the
    lag would only say so once events arrive)."""
    dead = [f"{p['name']} (pid {p['pid']})" for p in processes if not p["alive"]]
    if not dead:
        return None
    return f"not running: {', '.join(dead)}; `streamrec up` starts them again"


def exact_broker_version(settings: Settings, broker: dict[str, Any],
                         components: dict[str, Any]) -> None:
    """The embedded stack's record knows the exact version of the Kafka it started
    (ApiVersions only tells the protocol level): prefer it for that address. It knows
    the kind too, which a broker that no longer answers cannot tell."""
    rec = components.get("kafka")
    if not rec or rec["address"] not in settings.kafka_bootstrap.split(","):
        return
    if rec["version"]:
        broker["version"] = rec["version"]
    if broker.get("kind") is None:
        broker["kind"] = APACHE_KAFKA if rec["role"] == "kafka-broker" else TANSU
