"""The embedded stack: ``streamrec up`` / ``streamrec down`` on one machine, no Docker.

``up`` starts, as detached background processes, a broker (Tansu, or Apache Kafka with
``--broker kafka``: :mod:`streamrec.stack.infra`) and a redis-server (each unless an
external one is configured through the environment), creates the topics, and starts one
Faust worker and the API. It returns once the API answers ``/readyz`` and the worker's
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

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import Popen

from core import net
from core.broker import APACHE_KAFKA, TANSU
from core.settings import Settings
from streamrec.stack import infra, servers
from streamrec.stack.children import (
    spawn_child,
    stop_record,
    wait_ready,
    worker_heartbeat_for,
)
from streamrec.stack.probes import (
    bootstrap_reachable,
    connect_host,
    mask_url,
    port_bindable,
    redis_reachable,
    worker_heartbeats,
)
from streamrec.stack.records import (
    COMPONENTS,
    Echo,
    ProcessRecord,
    StackError,
    StackState,
    load_state,
    locked,
    print_line,
    save_state,
)

__all__ = ["ProcessRecord", "StackError", "StackState", "bootstrap_reachable", "down",
           "format_summary", "load_state", "mask_url", "print_line", "save_state", "up",
           "worker_heartbeats"]

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0


def _stop(rec: ProcessRecord, timeout: float = STOP_TIMEOUT_S) -> bool:
    """SIGTERM (then SIGKILL) one recorded process if it is still ours (Apache Kafka gets
    the time its controlled shutdown needs)."""
    return stop_record(rec, infra.stop_timeout(rec, timeout))


def _external(var: str, override: bool | None) -> bool:
    return bool(os.environ.get(var)) if override is None else override


@dataclass
class _Plan:
    """One ``up`` run: the settings, what runs already, what it decided."""

    settings: Settings
    old: StackState
    log_dir: Path
    echo: Echo
    alive: dict[str, ProcessRecord]
    state: StackState
    kind: str = TANSU
    restart_dependents: bool = False
    fresh: dict[str, tuple[Popen[bytes], int]] = field(default_factory=dict)


def up(settings: Settings, *, timeout_s: float = READY_TIMEOUT_S, echo: Echo = print_line,
       external_kafka: bool | None = None, external_redis: bool | None = None) -> StackState:
    """Start (or complete) the embedded stack and wait until it serves; see module doc.

    ``external_kafka``/``external_redis`` default to whether ``STREAMREC_KAFKA_BOOTSTRAP`` /
    ``STREAMREC_REDIS_URL`` is set in the environment; then ``settings``' address is used
    and no server is started. ``settings.broker`` picks the embedded broker when it was
    set (environment or ``--broker``); otherwise a running embedded broker keeps its kind.
    Raises ``StackError`` (one line, says what to do) or ``servers.PrerequisiteMissing``.
    """
    t0 = time.monotonic()
    state_dir = settings.state_dir.resolve()
    settings = settings.model_copy(update={"state_dir": state_dir})
    with locked(state_dir):
        old = load_state(settings) or StackState()
        state = _bring_up(settings, old, state_dir / "logs", echo,
                          _external("STREAMREC_KAFKA_BOOTSTRAP", external_kafka),
                          _external("STREAMREC_REDIS_URL", external_redis), timeout_s)
    echo(format_summary(state, elapsed_s=time.monotonic() - t0))
    if not state.kafka_external and state.processes["kafka"].broker_kind == TANSU:
        echo(infra.TANSU_WARNING)
    return state


def _wanted_kind(settings: Settings, old: StackState) -> str:
    """The embedded broker's kind: the setting when given, else the recorded broker's."""
    recorded = old.processes.get("kafka")
    if "broker" not in settings.model_fields_set and recorded is not None:
        return recorded.broker_kind
    return infra.broker_kind(settings.broker)


def _bring_up(settings: Settings, old: StackState, log_dir: Path, echo: Echo,
              external_kafka: bool, external_redis: bool, timeout_s: float) -> StackState:
    """The body of ``up``, under the lock."""
    alive = {name: rec for name, rec in old.processes.items() if rec.alive()}
    for name, rec in old.processes.items():
        if name not in alive and rec.is_ours():  # runs but does not listen: replace it
            echo(f"{rec.label} (pid {rec.pid}) does not answer; restarting it")
            _stop(rec)
    plan = _Plan(settings, old, log_dir, echo, alive, StackState(
        created_at=old.created_at or time.time(), log_dir=str(log_dir),
        kafka_external=external_kafka, redis_external=external_redis))
    plan.state.processes = dict(alive)  # until replaced below, so `down` always sees them
    plan.kind = _wanted_kind(settings, old)
    if not external_kafka and "kafka" not in alive:
        infra.check_prerequisites(plan.kind)
    if not external_redis and "redis" not in alive:
        servers.redis_binary()
    api_port = _api_port(settings, alive, echo)
    already = bool(old.processes) and len(alive) == len(old.processes) and (
        {"worker", "api"} <= set(alive))

    _bring_up_kafka(plan)
    _bring_up_redis(plan)
    state = plan.state
    if (old.kafka_bootstrap and old.kafka_bootstrap != state.kafka_bootstrap) or (
        old.redis_url and old.redis_url != state.redis_url
    ):
        plan.restart_dependents = True
    save_state(settings, state)  # from here on, `down` can clean up whatever follows

    updates: dict[str, object] = {"kafka_bootstrap": state.kafka_bootstrap,
                                  "redis_url": state.redis_url, "api_port": api_port}
    if (not external_kafka and plan.kind == APACHE_KAFKA
            and "kafka_idempotent_producer" not in settings.model_fields_set):
        updates["kafka_idempotent_producer"] = True  # Apache Kafka has them; Tansu not
    child_settings = settings.model_copy(update=updates)
    from core.topics import ensure_topics

    report = ensure_topics(child_settings)
    if report.created:
        echo(f"created topics: {', '.join(report.created)}")
    for topic, lines in report.drift.items():
        echo(f"warning: topic {topic} differs from streamrec's settings: {'; '.join(lines)}")
    _bring_up_children(plan, child_settings, api_port)
    if already and not plan.fresh and not plan.restart_dependents:
        echo("everything was already running; nothing started")
    wait_ready(state, plan.fresh, timeout_s)
    metrics_port = worker_heartbeat_for(state)[1].get("metrics_port", "")
    if metrics_port and metrics_port not in ("0", ""):
        state.worker_metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    save_state(settings, state)
    return state


def _api_port(settings: Settings, alive: dict[str, ProcessRecord], echo: Echo) -> int:
    """The API's port: the running API's, a free one for 0, else the setting if free."""
    host, port = settings.api_host, settings.api_port
    if "api" in alive:
        running = alive["api"].port() or port
        if port not in (0, running):
            echo(f"the API keeps running on port {running}; run `streamrec down` first "
                 f"to move it to port {port}")
        return running
    if port == 0:
        return net.free_port(connect_host(host))
    if not port_bindable(host, port):
        raise StackError(
            f"port {port} on {host} is already in use by another program; "
            f"set STREAMREC_API_PORT to a free port (e.g. STREAMREC_API_PORT="
            f"{net.free_port()}) and run `streamrec up` again")
    return port


def _bring_up_kafka(plan: _Plan) -> None:
    """Use the external broker, keep the running one, or start one of the wanted kind."""
    state, alive, echo = plan.state, plan.alive, plan.echo
    running = alive.get("kafka")
    if state.kafka_external:
        state.kafka_bootstrap = plan.settings.kafka_bootstrap
        if running is not None:  # switched from embedded to external: stop our broker
            echo("STREAMREC_KAFKA_BOOTSTRAP is set: stopping the embedded broker")
            _stop(running)
            state.processes.pop("kafka", None)
        if not bootstrap_reachable(state.kafka_bootstrap):
            raise StackError(
                f"cannot reach Kafka at {state.kafka_bootstrap} (STREAMREC_KAFKA_BOOTSTRAP); "
                "start it, or unset the variable to use the embedded broker")
        return
    if running is not None and running.broker_kind != plan.kind:
        echo(f"switching the embedded broker: stopping the {running.label} (pid "
             f"{running.pid}); the worker, the API and Redis restart against the new one")
        _stop(running)
        del alive["kafka"]
        plan.restart_dependents = True
    if "kafka" in alive:
        state.kafka_bootstrap = alive["kafka"].address
        return
    gone = plan.old.processes.get("kafka")
    if gone is not None and gone.broker_kind == plan.kind == TANSU:
        echo(f"the Kafka broker (pid {gone.pid}) is gone; it kept everything in memory, "
             "so its topics, events and consumer offsets are lost: starting a new one "
             "and restarting the worker and the API")
        plan.restart_dependents = True
    elif gone is not None and gone.broker_kind == plan.kind:
        echo(f"the {gone.label} (pid {gone.pid}) is gone: starting it again on its log "
             f"in {plan.settings.state_dir / 'kafka'}")
    if plan.kind == TANSU and (plan.settings.state_dir / "kafka" / "data").is_dir():
        echo(f"note: {plan.settings.state_dir / 'kafka'} keeps the Apache Kafka log of an "
             "earlier `streamrec up --broker kafka`; this stack runs Tansu beside it")
    previous = gone if gone is not None and gone.broker_kind == plan.kind else None
    rec = infra.start_broker(plan.kind, plan.settings, plan.log_dir, previous, echo)
    state.processes["kafka"] = rec
    state.kafka_bootstrap = rec.address


def _bring_up_redis(plan: _Plan) -> None:
    """Use the external Redis, keep the running one, or start one (with an append-only
    file exactly when the broker keeps its log)."""
    state, alive, echo = plan.state, plan.alive, plan.echo
    running = alive.get("redis")
    if state.redis_external:
        state.redis_url = plan.settings.redis_url
        if running is not None:
            echo("STREAMREC_REDIS_URL is set: stopping the embedded redis-server")
            _stop(running)
            state.processes.pop("redis", None)
        if not redis_reachable(state.redis_url):
            raise StackError(
                f"cannot reach Redis at {mask_url(state.redis_url)} (STREAMREC_REDIS_URL); "
                "start it, or unset the variable to use the embedded redis-server")
        return
    kind = infra.redis_kind(plan.kind)
    if running is not None and (running.kind or infra.REDIS_MEMORY) != kind:
        _stop(running)  # it holds the lists of the other broker's log
        del alive["redis"]
    if "redis" in alive:
        state.redis_url = f"redis://{alive['redis'].address}/0"
        return
    gone = plan.old.processes.get("redis")
    if gone is not None and (gone.kind or infra.REDIS_MEMORY) == kind:
        echo(f"redis-server (pid {gone.pid}) is gone: starting it again on its "
             "append-only file" if kind == infra.REDIS_AOF else
             f"redis-server (pid {gone.pid}) is gone and with it the prepared lists "
             "(memory only): starting a new one; lists refill as events arrive")
    rec = infra.start_redis(kind, plan.settings, plan.log_dir, gone)
    state.processes["redis"] = rec
    state.redis_url = f"redis://{rec.address}/0"


def _bring_up_children(plan: _Plan, child_settings: Settings, api_port: int) -> None:
    """Keep the running worker and API, or (re)start them against the servers."""
    state, echo = plan.state, plan.echo
    api_host = connect_host(plan.settings.api_host)
    state.api_url = f"http://{api_host}:{api_port}"
    for name in ("worker", "api"):
        rec_old = plan.alive.get(name)
        if rec_old is not None and not plan.restart_dependents:
            state.processes[name] = rec_old
            continue
        if rec_old is not None:
            echo(f"restarting the {rec_old.label} (pid {rec_old.pid}) against the new servers")
            _stop(rec_old)
        elif name in plan.old.processes:
            gone = plan.old.processes[name]
            echo(f"the {gone.label} (pid {gone.pid}) is gone: starting it again")
        address = f"{api_host}:{api_port}" if name == "api" else ""
        rec, proc, since = spawn_child(name, child_settings, plan.log_dir, address)
        state.processes[name] = rec
        plan.fresh[name] = (proc, since)
        save_state(plan.settings, state)


def format_summary(state: StackState, *, elapsed_s: float | None = None) -> str:
    """What ``up`` prints: where everything listens and how to stop it."""
    head = "streamrec is up" + (f" ({elapsed_s:.1f}s)" if elapsed_s is not None else "")
    broker = state.processes.get("kafka")
    redis = state.processes.get("redis")
    if state.kafka_external or broker is None:
        kafka_kind = "external"
    elif broker.broker_kind == APACHE_KAFKA:
        kafka_kind = f"embedded Apache Kafka {broker.version}, log in {Path(broker.log).parent}"
    else:
        kafka_kind = "embedded Tansu, memory only"
    if state.redis_external or redis is None:
        redis_kind = "external"
    else:
        redis_kind = ("embedded, append-only file" if redis.kind == infra.REDIS_AOF
                      else "embedded, memory only")
    rows = [("API", state.api_url), ("API docs", f"{state.api_url}/docs"),
            ("API metrics", f"{state.api_url}/metrics")]
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


def down(settings: Settings, *, echo: Echo = print_line,
         timeout_s: float = STOP_TIMEOUT_S) -> list[str]:
    """Stop exactly what ``up`` recorded (API, worker, Redis, broker) and forget it.

    Returns the names of the components that were running and got stopped. Safe when
    nothing runs or ``up`` never ran. Apache Kafka's log and Redis's append-only file
    stay in the state directory for the next ``up --broker kafka``.
    """
    settings = settings.model_copy(update={"state_dir": settings.state_dir.resolve()})
    if not settings.state_file.exists():
        echo(f"nothing to stop: no stack recorded in {settings.state_dir}")
        return []
    stopped: list[str] = []
    with locked(settings.state_dir):
        state = load_state(settings)
        if state is None:
            echo(f"unreadable state file {settings.state_file}; removing it")
            settings.state_file.unlink(missing_ok=True)
            return []
        for name in reversed(COMPONENTS):
            rec = state.processes.get(name)
            if rec is None:
                continue
            if not servers.pid_alive(rec.pid):
                echo(f"{rec.label} (pid {rec.pid}) was not running")
            elif not rec.is_ours():
                echo(f"pid {rec.pid} now belongs to another program; left it alone")
            else:
                _stop(rec, timeout_s)
                stopped.append(name)
                echo(f"stopped {rec.label} (pid {rec.pid})")
        settings.state_file.unlink(missing_ok=True)
    if not stopped:
        echo("nothing was running")
    elif (broker := state.processes.get("kafka")) and broker.broker_kind == TANSU:
        echo("the Tansu broker's log (events, offsets) and Redis's lists are gone with it")
    return stopped
