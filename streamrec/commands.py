"""What each ``streamrec`` subcommand does (the parser is :mod:`streamrec.cli`).

Every command imports what it needs inside its function, so ``streamrec --help`` is fast
and works even while a subsystem is missing. Errors a user can cause raise
:class:`CliError` (one line on stderr, non-zero exit).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Callable
from typing import Any

PROG = "streamrec"


class CliError(Exception):
    """A one-line, user-fixable error."""


# --------------------------------------------------------------------------- helpers


def _settings() -> Any:
    """The process settings (environment first, then the embedded stack's state file)."""
    from core.settings import get_settings

    return get_settings()


def _logging(args: argparse.Namespace, default: str = "WARNING") -> None:
    """Tools log warnings only; ``-v`` shows everything."""
    from core.logging_setup import configure_logging

    configure_logging("DEBUG" if args.verbose else default)


def _require_kafka(settings: Any) -> None:
    """Fail in a second, not after kafka-python's 30 s bootstrap timeout: Kafka not
    answering, or refusing the TLS certificate or the SASL login."""
    from streamrec.stack.embedded import bootstrap_reachable

    if not bootstrap_reachable(settings.kafka_bootstrap):
        raise CliError(
            f"cannot reach Kafka at {settings.kafka_bootstrap}: run `streamrec up`, "
            "or set STREAMREC_KAFKA_BOOTSTRAP"
        )
    _require_kafka_handshake(settings)


def _require_kafka_handshake(settings: Any) -> None:
    """A refused TLS/SASL handshake as one line (the clients would retry it for 30 s,
    then say only "Unable to bootstrap"; the worker then died with a traceback)."""
    from core.connections import kafka_handshake_problem

    problem = kafka_handshake_problem(settings)
    if problem:
        raise CliError(problem)


def _writable_state_dir(settings: Any, sub: str = "") -> None:
    """Create the state directory (and ``sub`` in it) now, so a path that cannot be one is
    an error naming STREAMREC_STATE_DIR, not a traceback from the worker or the lock."""
    path = settings.state_dir / sub
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(f"no permission to write in {path}")
    except OSError as exc:
        raise CliError(f"STREAMREC_STATE_DIR: cannot use {settings.state_dir} as the state "
                       f"directory ({exc.strerror or exc}); give a writable directory") from None


def _listen_error(host: str, port: int, reuse_port: bool = False) -> OSError | None:
    """:func:`core.net.listen_error`, imported when a command needs it."""
    from core.net import listen_error

    return listen_error(host, port, reuse_port=reuse_port)


def _api_address_free(settings: Any) -> None:
    """Bind the API's address once, as uvicorn will, so a port in use or an address not of
    this machine is an error naming the setting, not uvicorn's log lines or a traceback."""
    host, port = settings.api_host, settings.api_port
    error = _listen_error(host, port, reuse_port=settings.api_reuse_port)
    if error is not None:
        raise CliError(f"cannot listen on {host}:{port} ({error.strerror or error}): set "
                       "STREAMREC_API_PORT to a free port and STREAMREC_API_HOST to an "
                       "address of this machine")


def _import(module: str) -> Any:
    """Import a subsystem module, turning its absence into a one-line error."""
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and (module == exc.name or module.startswith(exc.name + ".")):
            raise CliError(f"{module} is not available in this installation") from None
        raise


# --------------------------------------------------------------------------- commands


def cmd_up(args: argparse.Namespace) -> int:
    """Start the embedded stack in the background and wait until it serves."""
    _logging(args)
    from streamrec.stack.embedded import up

    settings = _settings()
    _writable_state_dir(settings)
    given = {"broker": args.broker, "kafka_brokers": args.brokers, "workers": args.workers,
             "api_processes": args.api_processes, "redis_mode": args.redis_mode}
    updates = {name: value for name, value in given.items() if value is not None}
    if updates:
        from pydantic import ValidationError

        try:
            settings = type(settings).model_validate(
                {**settings.model_dump(exclude_unset=True), **updates})
        except ValidationError as exc:
            raise CliError("; ".join(_option_problem(err, updates) for err in exc.errors())
                           ) from None
    up(settings, timeout_s=args.timeout, restart=args.restart)
    return 0


#: The settings `up` takes from its options, by option.
_UP_OPTIONS = {"broker": "--broker", "kafka_brokers": "--brokers", "workers": "--workers",
               "api_processes": "--api-processes", "redis_mode": "--redis"}


def _option_problem(err: Any, given: dict[str, Any]) -> str:
    """One validation error of `up`'s settings as ``--workers 0: <rule>`` (the setting's
    STREAMREC_* name when the rule is about one no option gave)."""
    loc = [str(p) for p in err.get("loc", ())]
    name = loc[0] if loc else ""
    if name in given:
        return f"{_UP_OPTIONS[name]} {given[name]}: {err['msg']}"
    where = f"STREAMREC_{'_'.join(loc).upper()}: " if loc else ""
    return f"invalid configuration: {where}{err['msg']}"


def cmd_down(args: argparse.Namespace) -> int:
    """Stop what `up` started."""
    _logging(args)
    from streamrec.stack.embedded import down

    down(_settings(), timeout_s=args.timeout)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Print lag, counters, model, workers and processes."""
    _logging(args, "CRITICAL")
    from streamrec.ops.status import collect_status, format_status

    status = collect_status(_settings())
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=False, default=str))
    else:
        print(format_status(status))
    return 0 if status["ok"] else 1


def cmd_worker(args: argparse.Namespace) -> int:
    """Run one Faust worker in the foreground."""
    settings = _settings()
    _logging(args, settings.log_level)
    _writable_state_dir(settings, "worker-data")
    host, port = settings.worker_metrics_host, settings.worker_metrics_port
    error = _listen_error(host, port)  # port 0: whether the address is this machine's
    if error is not None:
        raise CliError(f"cannot serve the worker's metrics on {host}:{port} "
                       f"({error.strerror or error}): set STREAMREC_WORKER_METRICS_PORT to a "
                       "free port, or 0 to pick one, and STREAMREC_WORKER_METRICS_HOST to an "
                       "address of this machine")
    _require_kafka_handshake(settings)
    from core.connections import redis_handshake_problem

    problem = redis_handshake_problem(settings)  # else an agent crash a second, forever
    if problem:
        raise CliError(problem)
    worker = _import("stream.worker")
    from stream.faust_compat import UnknownFaustVersion

    try:
        worker.run_worker(settings)
    except UnknownFaustVersion as exc:  # names the known versions and the override
        raise CliError(str(exc)) from exc
    return 0


def cmd_api(args: argparse.Namespace) -> int:
    """Run the HTTP API in the foreground."""
    settings = _settings()
    _logging(args, settings.log_level)
    _api_address_free(settings)
    from core.connections import redis_handshake_problem

    problem = redis_handshake_problem(settings, mode_only=True)  # else fallbacks only
    if problem:
        raise CliError(problem)
    server = _import("api.server")
    try:
        server.run_api(settings)
    except _import("api.auth").InsecureConfig as exc:
        print(f"{PROG} api: {exc}", file=sys.stderr)
        return 2
    return 0


#: The stages of ``streamrec train``'s progress bars (``stream.retrain.Progress``), in
#: order, with the unit each counts; `train --help` and docs/operations.md name each.
TRAIN_STAGE_UNITS = {"wait for retrain": "s", "read": "msg", "fit": "iter", "similar": "item",
                     "user lists": "user", "live": "worker"}


def cmd_train(args: argparse.Namespace) -> int:
    """Train a model from the whole events topic and publish it."""
    _logging(args)
    # --threads and --busy-wait are bounded by their argparse types (exit 2 like every
    # other option's bad value; 100,000 solver threads once crashed the process).
    settings = _settings()
    _require_kafka(settings)
    retrain = _import("stream.retrain")
    busy = getattr(retrain, "RetrainBusy", ())
    from streamrec.progress import StageBars

    # Bars on a terminal only: a script reading the printed version, or a log, gets the
    # result lines alone (as before).
    bars = StageBars(TRAIN_STAGE_UNITS, enabled=not args.no_progress
                     and sys.stdout.isatty() and sys.stderr.isatty())
    try:
        result = retrain.train_and_publish(settings, wait_live_s=args.timeout,
                                           threads=args.threads, busy_wait_s=args.busy_wait,
                                           progress=bars)
    except retrain.NotEnoughData as exc:
        raise CliError(f"not enough data to train: {exc}") from None
    except busy as exc:
        raise CliError(f"{exc} (still, after {args.busy_wait:.0f}s of --busy-wait); try "
                       "again when it has finished") from None
    finally:
        bars.close()
    facts = (f"{result.n_users} users, {result.n_items} items, {result.n_events} events, "
             f"trained in {result.seconds:.1f}s")
    from streamrec.ops.replay import live_workers

    if not live_workers(settings):
        # "is live" with every worker dead said the lists had moved to the new model.
        print(f"model {result.version} is published: {facts}")
        print(f"{PROG}: note: no worker is running, so no list uses it yet: a worker "
              "takes it up when it starts (`streamrec up`)", file=sys.stderr)
    elif getattr(result, "live", True):
        print(f"model {result.version} is live: {facts}")
    else:
        print(f"model {result.version} is published: {facts}")
        print(f"{PROG}: note: not every worker served it within {args.timeout:.0f}s "
              "(see `streamrec status`)", file=sys.stderr)
    return 0


def cmd_rebuild(args: argparse.Namespace) -> int:
    """Replay the log into Redis (after a flush or a restart without persistence)."""
    _logging(args)
    settings = _settings()
    _require_kafka(settings)
    from core.kafka_tools import high_watermarks
    from streamrec.progress import progress_bar

    total = sum(high_watermarks(settings, settings.topic_events).values())
    with progress_bar(total=total, unit="msg", desc="rebuild") as bar:
        result = _import("stream.rebuild").rebuild_exclusive(settings, progress=bar.update)
    if result is None:
        print(f"{PROG} rebuild: another process is wiping or rebuilding Redis now (a worker "
              "after a flush, `streamrec replay --rebuild` or another `streamrec rebuild`): "
              "it ends with the same state; `streamrec status` shows when "
              "(retry once it is done if you still want to)", file=sys.stderr)
        return 1
    print(f"replayed {result.messages} messages ({result.events} events, {result.applied} "
          f"newly applied, {result.skipped_poison} poison skipped) and "
          f"{result.catalog_records} catalog records in {result.seconds:.1f}s")
    return 0


def delegate(module: str, prog: str, description: str) -> Callable[..., int]:
    """A command implemented elsewhere: ``module.configure_parser(parser)`` adds its
    options, ``module.run(args) -> int`` runs it. Imported only when invoked, so the
    module's own ``--help`` is shown by ``streamrec <command> --help``."""

    def command(args: argparse.Namespace, extra: list[str]) -> int:
        impl = _import(module)
        parser = argparse.ArgumentParser(prog=f"{PROG} {prog}", description=description)
        impl.configure_parser(parser)
        own = parser.parse_args(extra)
        for name, value in vars(args).items():  # global flags (e.g. --verbose) pass through
            if not hasattr(own, name):
                setattr(own, name, value)
        return int(impl.run(own) or 0)

    command.__doc__ = description
    return command


def cmd_topics_create(args: argparse.Namespace) -> int:
    """Create the topics streamrec needs (idempotent)."""
    _logging(args)
    settings = _settings()
    _require_kafka(settings)
    from core.topics import ensure_topics

    report = ensure_topics(settings)
    for name in report.created + report.existing:
        lines = report.drift.get(name)
        what = "created" if name in report.created else "exists"
        print(f"{name}: {what}" + (f"; DRIFTED: {'; '.join(lines)}" if lines else ""))
    for name, lines in report.drift.items():
        if name not in report.created + report.existing:
            print(f"{name}: DRIFTED: {'; '.join(lines)}")
    if report.drift:
        print("streamrec never changes an existing topic; fix the drift with your Kafka tools "
              "(e.g. kafka-configs.sh --alter --entity-type topics ...) or the settings",
              file=sys.stderr)
    elif not report.drift_checked:
        print("(Tansu ignores topic configs: retention and compaction are not applied)")
    return 0


def config_fields(settings: Any) -> list[dict[str, Any]]:
    """Each setting: name, env var, effective value (secrets masked), source, description."""
    from core.settings import Settings

    public = settings.public_dict()
    env_names = {k.upper() for k in os.environ}
    rows = []
    for name, info in Settings.model_fields.items():
        env = f"STREAMREC_{name.upper()}"
        value = public.get(name)
        default = info.get_default(call_default_factory=True)
        default_json = str(default) if hasattr(default, "__fspath__") else default
        if env in env_names:
            source = "env"
        elif value != default_json:
            source = "stack"  # filled from the embedded stack's state file
        else:
            source = "default"
        rows.append({"name": name, "env": env, "value": value, "default": default_json,
                     "source": source, "description": info.description or ""})
    return rows


def cmd_config(args: argparse.Namespace) -> int:
    """Print the effective settings: the configuration reference."""
    settings = _settings()
    rows = config_fields(settings)
    known = {row["env"] for row in rows}
    for name in sorted(k for k in os.environ if k.upper().startswith("STREAMREC_")):
        if name.upper() not in known:  # a typo would otherwise go unnoticed: it is ignored
            print(f"{PROG} config: warning: {name} is no setting (ignored)", file=sys.stderr)
    if args.json:
        print(json.dumps({"settings": settings.public_dict(), "fields": rows}, indent=2,
                         default=str))
        return 0
    print("# effective streamrec settings; override any of them with its environment variable")
    print("# [env] = from the environment, [stack] = from the state file of `streamrec up`")
    assignments = []
    for row in rows:
        value = row["value"]
        if value is None:  # unset: a commented line, so the output can be sourced back
            assignments.append(f"# {row['env']} unset")
            continue
        text = str(value).lower() if isinstance(value, bool) else str(value)
        assignments.append(f"{row['env']}={shlex.quote(text)}")
    width = max(len(a) for a in assignments)
    for row, assignment in zip(rows, assignments, strict=True):
        tag = "" if row["source"] == "default" else f"[{row['source']}] "
        print(f"{assignment.ljust(width)}  # {tag}{row['description']}")
    return 0
