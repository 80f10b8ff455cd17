"""The embedded stack: ``streamrec up`` / ``streamrec down`` on one machine, no Docker.

``up`` starts, as detached background processes, a broker (Tansu, or Apache Kafka with
``--broker kafka``, a KRaft cluster with ``--brokers 3``: :mod:`streamrec.stack.plan`)
and a redis-server (each unless an external one is configured through the environment),
creates the topics, and starts the Faust workers (``--workers N``: they split the
partitions) and the API processes (``--api-processes M``: they share one port). It
returns once the API answers ``/readyz``, every API process listens and every worker's
Redis heartbeat says it consumes. Everything started is recorded in
``<state_dir>/stack.json`` (:mod:`streamrec.stack.records`) so that

* ``down`` stops exactly those processes and nothing else;
* ``up`` run again is idempotent: it keeps what still runs and restarts only what died
  (a new Tansu broker means the old one's memory-only data is gone, so its dependents
  restart; Apache Kafka comes back on its log);
* other commands (``status``, ``train``, ``simulate``) find the stack's addresses
  without any exported variable (``Settings.with_stack_defaults``).
"""

from __future__ import annotations

import errno
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from core import net
from core.broker import APACHE_KAFKA, TANSU
from core.setting_checks import mask_url
from core.settings import Settings
from core.stack_settings import workers_per_core
from streamrec.stack import infra, servers
from streamrec.stack.children import (
    STOP_TIMEOUT_S,
    api_metrics_dir,
    spawn_child,
    wait_ready,
    worker_heartbeat_for,
)
from streamrec.stack.kafka_cluster import replication_for
from streamrec.stack.plan import (
    Plan,
    bring_up_kafka,
    bring_up_redis,
    broker_summary,
    stop,
    wanted_brokers,
    wanted_kind,
    wanted_redis_mode,
)
from streamrec.stack.probes import (
    bootstrap_reachable,
    worker_heartbeats,
)
from streamrec.stack.records import (
    Echo,
    ProcessRecord,
    StackError,
    StackState,
    load_state,
    locked,
    member_name,
    members,
    print_line,
    save_state,
    split_name,
    start_order,
)
from streamrec.stack.rolling import roll

__all__ = ["ProcessRecord", "StackError", "StackState", "bootstrap_reachable", "down",
           "format_summary", "load_state", "mask_url", "print_line", "save_state", "up",
           "worker_heartbeats"]

READY_TIMEOUT_S = 60.0


def _external(var: str, override: bool | None) -> bool:
    return bool(os.environ.get(var)) if override is None else override


def up(settings: Settings, *, timeout_s: float = READY_TIMEOUT_S, echo: Echo = print_line,
       external_kafka: bool | None = None, external_redis: bool | None = None,
       restart: bool = False) -> StackState:
    """Start (or complete) the embedded stack and wait until it serves; see module doc.

    ``external_kafka``/``external_redis`` default to whether ``STREAMREC_KAFKA_BOOTSTRAP`` /
    ``STREAMREC_REDIS_URL`` is set in the environment; then ``settings``' address is used
    and no server is started. ``settings.broker`` picks the embedded broker when it was
    set (environment or ``--broker``); otherwise a running embedded broker keeps its kind.
    The same holds for the number of brokers, workers and API processes. ``restart``
    then replaces the workers and API processes that ran on, one at a time
    (:mod:`streamrec.stack.rolling`), so that new code or settings take effect.
    Raises ``StackError`` (one line, says what to do) or ``servers.PrerequisiteMissing``.
    """
    t0 = time.monotonic()
    state_dir = settings.state_dir.resolve()
    settings = settings.model_copy(update={"state_dir": state_dir})
    with locked(state_dir):
        old = load_state(settings) or StackState()
        state = _bring_up(settings, old, state_dir / "logs", echo,
                          _external("STREAMREC_KAFKA_BOOTSTRAP", external_kafka),
                          _external("STREAMREC_REDIS_URL", external_redis), timeout_s,
                          restart)
    echo(format_summary(state, elapsed_s=time.monotonic() - t0))
    if not state.kafka_external and state.processes["kafka"].broker_kind == TANSU:
        echo(infra.TANSU_WARNING)
    return state


def _wanted_count(settings: Settings, old: StackState, setting: str, component: str) -> int:
    """Processes of ``component`` wanted: the setting when given, else as many as were
    recorded (a plain ``up`` keeps the stack's shape), else the setting's default (for
    the workers: one per core, at most one per partition)."""
    recorded = len(members(old.processes, component))
    value = getattr(settings, setting)
    if value is not None and (setting in settings.model_fields_set or not recorded):
        return int(value)
    return recorded or workers_per_core(settings.topic_partitions)  # only workers is unset


def _bring_up(settings: Settings, old: StackState, log_dir: Path, echo: Echo,
              external_kafka: bool, external_redis: bool, timeout_s: float,
              restart: bool = False) -> StackState:
    """The body of ``up``, under the lock."""
    alive = {name: rec for name, rec in old.processes.items() if rec.alive()}
    for name, rec in old.processes.items():
        if name not in alive and rec.is_ours():  # runs but does not listen: replace it
            echo(f"{rec.label} (pid {rec.pid}) does not answer; restarting it")
            stop(rec)
    plan = Plan(settings, old, log_dir, echo, alive, StackState(
        created_at=old.created_at or time.time(), log_dir=str(log_dir),
        kafka_external=external_kafka, redis_external=external_redis))
    plan.state.processes = dict(alive)  # until replaced below, so `down` always sees them
    plan.kind = wanted_kind(settings, old)
    plan.brokers = 1 if external_kafka else wanted_brokers(settings, old, plan.kind)
    plan.redis_mode = settings.redis_mode if external_redis else wanted_redis_mode(settings, old)
    if not external_kafka and "kafka" not in alive:
        infra.check_prerequisites(plan.kind)
    if not external_redis and "redis" not in alive:
        servers.redis_binary()
    if old.redis_mode != plan.redis_mode and old.processes:
        plan.restart_dependents = True  # the worker and the API connect another way
    api_port = _api_port(settings, alive, echo)
    counts = {"worker": _wanted_count(settings, old, "workers", "worker"),
              "api": _wanted_count(settings, old, "api_processes", "api")}
    already = bool(old.processes) and len(alive) == len(old.processes) and all(
        len(members(alive, name)) == count for name, count in counts.items())

    bring_up_kafka(plan)
    bring_up_redis(plan)
    state = plan.state
    if (old.kafka_bootstrap and old.kafka_bootstrap != state.kafka_bootstrap) or (
        old.redis_url and old.redis_url != state.redis_url
    ):
        plan.restart_dependents = True
    save_state(settings, state)  # from here on, `down` can clean up whatever follows

    child_settings = settings.model_copy(update=_child_updates(plan, settings, api_port))
    from core.topics import ensure_topics

    report = ensure_topics(child_settings)
    if report.created:
        echo(f"created topics: {', '.join(report.created)}")
    for topic, lines in report.drift.items():
        echo(f"warning: topic {topic} differs from streamrec's settings: {'; '.join(lines)}")
    _bring_up_children(plan, child_settings, api_port, counts)
    if already and not plan.fresh and not plan.restart_dependents and not restart:
        echo("everything was already running; nothing started (`up --restart` restarts "
             "the workers and API processes one at a time, e.g. for new settings)")
    wait_ready(state, plan.fresh, timeout_s)
    if restart:
        address = state.api_url.removeprefix("http://")
        roll(plan, child_settings, address, timeout_s)
    metrics_port = worker_heartbeat_for(state)[1].get("metrics_port", "")
    if metrics_port and metrics_port not in ("0", ""):
        state.worker_metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    save_state(settings, state)
    return state


def _child_updates(plan: Plan, settings: Settings, api_port: int) -> dict[str, object]:
    """What the worker and API processes see besides ``settings``: the servers' addresses,
    and on an embedded Apache Kafka its idempotent producers and, on a cluster, topics
    replicated across it (unless the settings say otherwise)."""
    state = plan.state
    updates: dict[str, object] = {"kafka_bootstrap": state.kafka_bootstrap,
                                  "redis_url": state.redis_url, "api_port": api_port,
                                  "redis_mode": state.redis_mode, "api_reuse_port": True}
    if state.kafka_external or plan.kind != APACHE_KAFKA:
        return updates
    given = settings.model_fields_set
    if "kafka_idempotent_producer" not in given:
        updates["kafka_idempotent_producer"] = True  # Apache Kafka has them; Tansu not
    replicas, insync = replication_for(plan.brokers)
    if "topic_replication_factor" in given:
        replicas = settings.topic_replication_factor
    updates["topic_replication_factor"] = replicas
    if "topic_min_insync_replicas" not in given:
        updates["topic_min_insync_replicas"] = min(insync, replicas)
    return updates


def _api_port(settings: Settings, alive: dict[str, ProcessRecord], echo: Echo) -> int:
    """The API's port: the running API's, a free one for 0, else the setting if free."""
    host, port = settings.api_host, settings.api_port
    apis = members(alive, "api")
    if apis:  # the API processes that still run keep the port; the others join them
        running = apis[0].port() or port
        if port not in (0, running):
            echo(f"the API keeps running on port {running}; run `streamrec down` first "
                 f"to move it to port {port}")
        return running
    if port == 0:
        return net.free_port(net.connect_host(host))
    error = net.listen_error(host, port)
    if error is not None and error.errno != errno.EADDRINUSE:
        raise StackError(
            f"cannot listen on {host}:{port} ({error.strerror or error}): set "
            "STREAMREC_API_HOST to an address of this machine (or empty for all of them)")
    if error is not None:
        raise StackError(
            f"port {port} on {host} is already in use by another program; "
            f"set STREAMREC_API_PORT to a free port (e.g. STREAMREC_API_PORT="
            f"{net.free_port()}) and run `streamrec up` again")
    return port


def _bring_up_children(plan: Plan, child_settings: Settings, api_port: int,
                       counts: dict[str, int]) -> None:
    """Keep the running workers and API processes, (re)start the missing ones against
    the servers, and stop those beyond the wanted counts. Every API process binds the
    one port with SO_REUSEPORT: the kernel spreads connections over them."""
    state, echo = plan.state, plan.echo
    api_host = net.connect_host(plan.settings.api_host)
    state.api_url = net.local_http_url(plan.settings.api_host, api_port)
    if not any(rec.name in plan.alive and not plan.restart_dependents
               for rec in members(plan.old.processes, "api")):
        api_metrics_dir(child_settings, fresh=True)  # no API process runs on: a new count
    for component in ("worker", "api"):
        for rec in members(plan.old.processes, component)[counts[component]:]:
            if rec.name in plan.alive:
                echo(f"stopping the {rec.label} (pid {rec.pid}): {counts[component]} wanted")
                plan.drop(rec)
            state.processes.pop(rec.name, None)
        for index in range(1, counts[component] + 1):
            name = member_name(component, index)
            rec_old = plan.alive.get(name)
            if rec_old is not None and not plan.restart_dependents:
                state.processes[name] = rec_old
                continue
            if rec_old is not None:
                echo(f"restarting the {rec_old.label} (pid {rec_old.pid}) against the new "
                     "servers")
                stop(rec_old)
            elif name in plan.old.processes:
                gone = plan.old.processes[name]
                echo(f"the {gone.label} (pid {gone.pid}) is gone: starting it again")
            address = f"{api_host}:{api_port}" if component == "api" else ""
            rec, proc, since = spawn_child(name, child_settings, plan.log_dir, address)
            state.processes[name] = rec
            plan.fresh[name] = (proc, since)
            save_state(plan.settings, state)


def format_summary(state: StackState, *, elapsed_s: float | None = None) -> str:
    """What ``up`` prints: where everything listens and how to stop it."""
    head = "streamrec is up" + (f" ({elapsed_s:.1f}s)" if elapsed_s is not None else "")
    redis = state.processes.get("redis")
    kafka_kind = broker_summary(state)
    nodes = members(state.processes, "redis")
    if state.redis_external or redis is None:
        redis_kind = f"external, {state.redis_mode}"
    else:
        files = "append-only file" if redis.kind.endswith(infra.REDIS_AOF) else "memory only"
        redis_kind = (f"embedded Redis Cluster of {len(nodes)} nodes, {files}"
                      if state.redis_mode == "cluster" else f"embedded, {files}")
    apis = len(members(state.processes, "api"))
    api_line = state.api_url + (f" ({apis} processes on one port)" if apis > 1 else "")
    workers = len(members(state.processes, "worker"))
    rows = [("API", api_line), ("API docs", f"{state.api_url}/docs"),
            ("API metrics", f"{state.api_url}/metrics")]
    if state.worker_metrics_url:
        # Each worker has a port of its own: this is the first one's.
        rows.append(("worker metrics", state.worker_metrics_url + (
            f" (the first of {workers}; each worker's port: `streamrec status`)"
            if workers > 1 else "")))
    if workers > 1:
        rows.append(("workers", f"{workers} (they split the partitions)"))
    rows += [
        ("Kafka", f"{state.kafka_bootstrap} ({kafka_kind})"),
        ("Redis", f"{mask_url(state.redis_url)} ({redis_kind})"),
        ("logs", state.log_dir),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [head] + [f"  {k.ljust(width)}  {v}" for k, v in rows]
    lines.append("check with `streamrec status`, stop with `streamrec down`")
    return "\n".join(lines)


def _stop_one(rec: ProcessRecord, timeout_s: float, echo: Echo) -> bool:
    """Stop one recorded process if it still runs and is ours, and say so; whether it
    was stopped."""
    if not servers.pid_alive(rec.pid):
        echo(f"{rec.label} (pid {rec.pid}) was not running")
    elif not rec.is_ours():
        echo(f"pid {rec.pid} now belongs to another program; left it alone")
    else:
        stop(rec, timeout_s)
        echo(f"stopped {rec.label} (pid {rec.pid})")
        return True
    return False


def down(settings: Settings, *, echo: Echo = print_line,
         timeout_s: float = STOP_TIMEOUT_S) -> list[str]:
    """Stop exactly what ``up`` recorded (API, worker, Redis, then the brokers together)
    and forget it.

    Returns the names of the components that were running and got stopped. Safe when
    nothing runs or ``up`` never ran. Apache Kafka's log and Redis's append-only file
    stay in the state directory for the next ``up --broker kafka``.
    """
    settings = settings.model_copy(update={"state_dir": settings.state_dir.resolve()})
    if not settings.state_file.exists():
        echo(f"nothing to stop: no stack recorded in {settings.state_dir}")
        return []
    with locked(settings.state_dir):
        state = load_state(settings)
        if state is None:
            echo(f"unreadable state file {settings.state_file}; removing it")
            settings.state_file.unlink(missing_ok=True)
            return []
        names = sorted(state.processes, key=start_order, reverse=True)
        brokers = [n for n in names if split_name(n)[0] == "kafka"]
        said = [(n, _stop_one(state.processes[n], timeout_s, echo))
                for n in names if n not in brokers]
        # The brokers last and all at once (as kafka-server-stop.sh does): stopped one by
        # one, the last node of a 3-node cluster has lost its KRaft quorum and cannot end
        # its controlled shutdown (it waited KAFKA_STOP_TIMEOUT_S, then was killed).
        with ThreadPoolExecutor(max_workers=max(len(brokers), 1)) as pool:
            said += zip(brokers, pool.map(
                lambda n: _stop_one(state.processes[n], timeout_s, echo), brokers), strict=True)
        stopped = [name for name, done in said if done]
        settings.state_file.unlink(missing_ok=True)
    if not stopped:
        echo("nothing was running")
    elif (broker := state.processes.get("kafka")) and broker.broker_kind == TANSU:
        echo("the Tansu broker's log (events, offsets) and Redis's lists are gone with it")
    return stopped
