"""One ``streamrec up`` run's decisions about its servers: the broker (one Tansu, or one or
more Apache Kafka nodes) and Redis, each kept, restarted where it died, or replaced.

:class:`Plan` carries what ``up`` knows (settings, the recorded stack, what still runs)
and what it decided; :func:`bring_up_kafka` and :func:`bring_up_redis` fill its new
state. The worker and API processes are :mod:`streamrec.stack.embedded`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from subprocess import Popen

from core.broker import APACHE_KAFKA, TANSU
from core.setting_checks import mask_url
from core.settings import Settings
from streamrec.stack import infra
from streamrec.stack.children import STOP_TIMEOUT_S, stop_record
from streamrec.stack.kafka_cluster import bootstrap_of
from streamrec.stack.probes import bootstrap_reachable, redis_reachable
from streamrec.stack.records import (
    Echo,
    ProcessRecord,
    StackError,
    StackState,
    member_name,
    members,
    split_name,
)
from streamrec.stack.redis_cluster_plan import CLUSTER_KIND, bring_up_redis_cluster

#: How messages name a broker kind.
_KIND_NAMES = {TANSU: "Tansu", APACHE_KAFKA: "Apache Kafka"}


def stop(rec: ProcessRecord, timeout: float = STOP_TIMEOUT_S) -> bool:
    """SIGTERM (then SIGKILL) one recorded process if it is still ours (Apache Kafka gets
    the time its controlled shutdown needs)."""
    return stop_record(rec, infra.stop_timeout(rec, timeout))


@dataclass
class Plan:
    """One ``up`` run: the settings, what runs already, what it decided."""

    settings: Settings
    old: StackState
    log_dir: Path
    echo: Echo
    alive: dict[str, ProcessRecord]
    state: StackState
    kind: str = TANSU
    brokers: int = 1
    redis_mode: str = "standalone"
    restart_dependents: bool = False
    fresh: dict[str, tuple[Popen[bytes], int]] = field(default_factory=dict)

    def drop(self, rec: ProcessRecord) -> None:
        """Stop ``rec`` and forget it (it is replaced or no longer wanted). A server goes
        only after the workers and API processes that use it (they restart against its
        replacement): a worker left running reconnects to a new Redis on the same port
        and writes its heartbeat and freshness of the old log there."""
        if split_name(rec.name)[0] in ("kafka", "redis"):
            for dependent in members(self.alive, "worker") + members(self.alive, "api"):
                stop(dependent)
            self.restart_dependents = True
        stop(rec)
        self.alive.pop(rec.name, None)
        self.state.processes.pop(rec.name, None)


def _use_external(plan: Plan, running: list[ProcessRecord], name: str, address: str,
                  variable: str, embedded: str, reachable: bool) -> None:
    """An external server is configured: stop ours (switched from embedded), and fail
    with what to do when the external one does not answer."""
    if running:
        plan.echo(f"{variable} is set: stopping the embedded {embedded}")
        for rec in running:
            plan.drop(rec)
    if not reachable:
        raise StackError(f"cannot reach {name} at {address} ({variable}); start it, or "
                         f"unset the variable to use the embedded {embedded}")


def wanted_kind(settings: Settings, old: StackState) -> str:
    """The embedded broker's kind: the setting when given, else the recorded broker's."""
    recorded = old.processes.get("kafka")
    if "broker" not in settings.model_fields_set and recorded is not None:
        return recorded.broker_kind
    return infra.broker_kind(settings.broker)


def wanted_brokers(settings: Settings, old: StackState, kind: str) -> int:
    """How many broker nodes: the setting when given, else as many as were recorded.
    Tansu runs as one broker only."""
    recorded = len(members(old.processes, "kafka"))
    given = "kafka_brokers" in settings.model_fields_set
    count = settings.kafka_brokers if given or not recorded else recorded
    if kind == TANSU and count > 1:
        if given:
            raise StackError(f"Tansu runs as a single broker: `streamrec up --broker kafka "
                             f"--brokers {count}` starts an Apache Kafka cluster")
        count = 1
    return count


def bring_up_kafka(plan: Plan) -> None:
    """Use the external broker, keep the running nodes, start the dead ones, or start a
    broker (cluster) of the wanted kind and size."""
    state, echo = plan.state, plan.echo
    recorded = members(plan.old.processes, "kafka")
    running = [rec for rec in recorded if rec.name in plan.alive]
    if state.kafka_external:
        state.kafka_bootstrap = plan.settings.kafka_bootstrap
        _use_external(plan, running, "Kafka", state.kafka_bootstrap,
                      "STREAMREC_KAFKA_BOOTSTRAP", "broker",
                      bootstrap_reachable(state.kafka_bootstrap))
        return
    if recorded and (recorded[0].broker_kind != plan.kind or len(recorded) != plan.brokers):
        if running:
            same = recorded[0].broker_kind == plan.kind
            what = (f"from {len(recorded)} to {plan.brokers} brokers" if same else
                    f"from {_KIND_NAMES[recorded[0].broker_kind]} to {_KIND_NAMES[plan.kind]}")
            restarts = "the worker and the API restart" if same else (
                "the worker, the API and Redis restart")
            echo(f"switching the embedded broker {what}: stopping it; {restarts} against "
                 "the new one")
            for rec in running:
                plan.drop(rec)
            plan.restart_dependents = True
        recorded, running = [], []
    if plan.kind == TANSU:
        _bring_up_tansu(plan)
    else:
        _bring_up_kafka_nodes(plan, recorded, running)


def _bring_up_tansu(plan: Plan) -> None:
    """Keep the running Tansu, or start one (a new one has lost everything)."""
    state, echo = plan.state, plan.echo
    if "kafka" in plan.alive:
        state.kafka_bootstrap = plan.alive["kafka"].address
        return
    gone = plan.old.processes.get("kafka")
    if gone is not None and gone.broker_kind == TANSU:
        echo(f"the Kafka broker (pid {gone.pid}) is gone; it kept everything in memory, "
             "so its topics, events and consumer offsets are lost: starting a new one "
             "and restarting the worker and the API")
        plan.restart_dependents = True
    if (plan.settings.state_dir / "kafka" / "data").is_dir():
        echo(f"note: {plan.settings.state_dir / 'kafka'} keeps the Apache Kafka log of an "
             "earlier `streamrec up --broker kafka`; this stack runs Tansu beside it")
    previous = gone if gone is not None and gone.broker_kind == TANSU else None
    rec = infra.start_broker(TANSU, plan.settings, plan.log_dir, previous, echo)
    state.processes["kafka"] = rec
    state.kafka_bootstrap = rec.address


def _bring_up_kafka_nodes(plan: Plan, recorded: list[ProcessRecord],
                          running: list[ProcessRecord]) -> None:
    """Start the Apache Kafka nodes that do not run, on their recorded ports and logs."""
    state, echo, n = plan.state, plan.echo, plan.brokers
    by_index = {rec.index: rec for rec in recorded}
    dead = [i for i in range(1, n + 1) if member_name("kafka", i) not in plan.alive]
    for i in dead:
        gone = by_index.get(i)
        if gone is not None:
            echo(f"the {gone.label} (pid {gone.pid}) is gone: starting it again on its log "
                 f"in {Path(gone.log).parent}")
    if dead:
        for rec in infra.start_kafka_nodes(plan.settings, n, by_index, dead, echo,
                                           peers_alive=bool(running)):
            state.processes[rec.name] = rec
    state.kafka_bootstrap = bootstrap_of(
        [state.processes[member_name("kafka", i)].address for i in range(1, n + 1)])


def wanted_redis_mode(settings: Settings, old: StackState) -> str:
    """``standalone`` or ``cluster``: the setting when given, else the recorded Redis's."""
    recorded = members(old.processes, "redis")
    if "redis_mode" in settings.model_fields_set or not recorded:
        return settings.redis_mode
    return "cluster" if recorded[0].kind.startswith(CLUSTER_KIND) else "standalone"


def bring_up_redis(plan: Plan) -> None:
    """Use the external Redis, keep the running one, or start one (with an append-only
    file exactly when the broker keeps its log): a redis-server, or a Redis Cluster."""
    state, alive, echo = plan.state, plan.alive, plan.echo
    recorded = members(plan.old.processes, "redis")
    running = [rec for rec in recorded if rec.name in alive]
    state.redis_mode = plan.redis_mode
    if state.redis_external:
        state.redis_url = plan.settings.redis_url
        _use_external(plan, running, "Redis", mask_url(state.redis_url),
                      "STREAMREC_REDIS_URL", "redis-server", redis_reachable(state.redis_url))
        return
    if plan.redis_mode == "cluster":
        bring_up_redis_cluster(plan)
        return
    if running and (len(recorded) > 1 or recorded[0].kind.startswith(CLUSTER_KIND)):
        echo("switching Redis from a cluster to one redis-server: the worker and the API "
             "restart against it")
        for rec in running:
            plan.drop(rec)
        plan.restart_dependents = True
    running_one = alive.get("redis")
    kind = infra.redis_kind(plan.kind)
    if running_one is not None and (running_one.kind or infra.REDIS_MEMORY) != kind:
        plan.drop(running_one)  # it holds the lists of the other broker's log
    if "redis" in alive:
        state.redis_url = f"redis://{alive['redis'].address}/0"
        return
    gone = plan.old.processes.get("redis")
    if gone is not None and gone.kind.startswith(CLUSTER_KIND):
        gone = None
    if gone is not None and (gone.kind or infra.REDIS_MEMORY) == kind:
        echo(f"redis-server (pid {gone.pid}) is gone: starting it again on its "
             "append-only file" if kind == infra.REDIS_AOF else
             f"redis-server (pid {gone.pid}) is gone and with it the prepared lists "
             "(memory only): starting a new one; lists refill as events arrive")
    rec = infra.start_redis(kind, plan.settings, plan.log_dir, gone)
    state.processes["redis"] = rec
    state.redis_url = f"redis://{rec.address}/0"


def broker_summary(state: StackState) -> str:
    """How ``up``'s summary describes the broker."""
    nodes = members(state.processes, "kafka")
    if state.kafka_external or not nodes:
        return "external"
    if nodes[0].broker_kind != APACHE_KAFKA:
        return "embedded Tansu, memory only"
    count = f", {len(nodes)} brokers" if len(nodes) > 1 else ""
    where = Path(nodes[0].log).parent if len(nodes) == 1 else Path(nodes[0].log).parents[1]
    return f"embedded Apache Kafka {nodes[0].version}{count}, log in {where}"
