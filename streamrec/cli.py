"""The ``streamrec`` command line: run the stack, the processes, and the operator tools.

Every command imports what it needs inside its function, so ``streamrec --help`` is fast
and works even while a subsystem is missing. Errors a user can cause (a port in use, an
unreachable server, a missing binary, a bad setting) print one line to stderr and exit
non-zero; a traceback means a bug.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from typing import Any

from streamrec import __version__

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
    """Fail in a second, not after kafka-python's 30 s bootstrap timeout."""
    from streamrec.stack.embedded import bootstrap_reachable

    if not bootstrap_reachable(settings.kafka_bootstrap):
        raise CliError(
            f"cannot reach Kafka at {settings.kafka_bootstrap}: run `streamrec up`, "
            "or set STREAMREC_KAFKA_BOOTSTRAP"
        )


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

    up(_settings(), timeout_s=args.timeout)
    return 0


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
    _import("api.server").run_api(settings)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train a model from the whole events topic and publish it."""
    _logging(args)
    settings = _settings()
    _require_kafka(settings)
    retrain = _import("stream.retrain")
    busy = getattr(retrain, "RetrainBusy", ())
    try:
        result = retrain.train_and_publish(settings, wait_live_s=args.timeout)
    except retrain.NotEnoughData as exc:
        raise CliError(f"not enough data to train: {exc}") from None
    except busy as exc:
        raise CliError(f"{exc}; try again when it has finished") from None
    facts = (f"{result.n_users} users, {result.n_items} items, {result.n_events} events, "
             f"trained in {result.seconds:.1f}s")
    if getattr(result, "live", True):
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
    result = _import("stream.rebuild").rebuild(settings)
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
    from core.kafka_tools import create_topics, topic_names

    created = set(create_topics(settings))
    for name in topic_names(settings):
        print(f"{name}: {'created' if name in created else 'exists'}")
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
    if args.json:
        print(json.dumps({"settings": settings.public_dict(), "fields": rows}, indent=2,
                         default=str))
        return 0
    print("# effective streamrec settings; override any of them with its environment variable")
    print("# [env] = from the environment, [stack] = from the state file of `streamrec up`")
    assignments = []
    for row in rows:
        value = row["value"]
        text = str(value).lower() if isinstance(value, bool) else str(value)
        assignments.append(f"{row['env']}={shlex.quote(text)}")
    width = max(len(a) for a in assignments)
    for row, assignment in zip(rows, assignments, strict=True):
        tag = "" if row["source"] == "default" else f"[{row['source']}] "
        print(f"{assignment.ljust(width)}  # {tag}{row['description']}")
    return 0


# --------------------------------------------------------------------------- parser


_DESCRIPTION = """\
streamrec: real-time recommendations from tracking events
(events -> Kafka -> Faust worker -> Redis -> FastAPI).

Settings come from STREAMREC_* environment variables (see `streamrec config`); commands
run in the directory where `streamrec up` ran find that stack by themselves."""

_EPILOG = """\
typical session:
  streamrec up          start broker, Redis, worker and API in the background
  streamrec simulate    send synthetic traffic to the API
  streamrec train       train a model on all events and make it live
  streamrec status      lag, counters, model, workers
  streamrec down        stop everything `up` started
or all in one go: streamrec demo (up, traffic, a model, sample answers; keeps running)"""


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of every subcommand (cheap: imports nothing)."""
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog=PROG, description=_DESCRIPTION, epilog=_EPILOG,
                                     formatter_class=fmt)
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log everything (DEBUG) to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, func: Callable[..., int], help_text: str, description: str
            ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=description, formatter_class=fmt)
        p.set_defaults(func=func)
        return p

    p = add("up", cmd_up, "start the embedded stack in the background",
            "Start a Tansu Kafka broker and a redis-server (unless STREAMREC_KAFKA_BOOTSTRAP /\n"
            "STREAMREC_REDIS_URL point at external ones), create the topics, start one worker\n"
            "and the API, and wait until the API is ready and the worker consumes.\n"
            "Running it again keeps what runs and restarts only what died.\n"
            "State: .streamrec/stack.json, logs: .streamrec/logs/ (STREAMREC_STATE_DIR).")
    p.add_argument("--timeout", type=float, default=60.0, metavar="S",
                   help="seconds to wait for readiness (default: 60)")

    p = add("down", cmd_down, "stop everything `up` started",
            "Stop the API, the worker, redis-server and the broker that `streamrec up`\n"
            "recorded (SIGTERM, then SIGKILL), and remove the state file. Safe to run when\n"
            "nothing runs. External servers are never touched.")
    p.add_argument("--timeout", type=float, default=10.0, metavar="S",
                   help="seconds each process gets to exit before SIGKILL (default: 10)")

    p = add("status", cmd_status, "show lag, counters, model, workers and processes",
            "Topic end offsets, the worker group's committed offsets and lag, processed and\n"
            "dead-lettered counts, freshness, the live model and its age, worker heartbeats,\n"
            "Redis memory, and which processes of `streamrec up` run. Exit code 1 when Kafka\n"
            "or Redis cannot be reached (the output says which).")
    p.add_argument("--json", action="store_true",
                   help="print JSON (keys include lag, processed, model_version)")

    add("worker", cmd_worker, "run one stream worker in the foreground",
        "Run one Faust worker process: consumes events and catalog, keeps Redis lists\n"
        "current, heartbeats into Redis. Start more for more throughput (partitions are\n"
        "split between them). Stop with Ctrl-C / SIGTERM.")
    add("api", cmd_api, "run the HTTP API in the foreground",
        "Run the FastAPI service on STREAMREC_API_HOST:STREAMREC_API_PORT\n"
        "(endpoints /v1/..., /readyz, /docs, /metrics).")

    p = add("train", cmd_train, "train a model now and wait until it is live",
            "Read the whole events topic, train ALS, publish the new model version to Redis\n"
            "and wait until a worker serves it; prints the version.")
    p.add_argument("--timeout", type=float, default=30.0, metavar="S",
                   help="seconds to wait for workers to switch to the new model (default: 30)")

    add("rebuild", cmd_rebuild, "rebuild Redis from the Kafka log",
        "Replay the catalog and events topics from offset 0 into Redis through the worker's\n"
        "own processor (each event applied once, by event id). Use after Redis was flushed\n"
        "or restarted empty; running workers also do this by themselves within seconds.\n"
        "Safe to run any time and while the stack runs. `streamrec train` restores the model.")

    def add_delegate(subs: Any, name: str, module: str, prog: str, help_text: str,
                     description: str) -> None:
        p = subs.add_parser(name, add_help=False, help=help_text, description=description)
        p.set_defaults(func=delegate(module, prog, description), passthrough=True)

    add_delegate(sub, "simulate", "streamrec.sim.simulate", "simulate",
                 "send synthetic shoppers' traffic to the API",
                 "Send synthetic shoppers' traffic to the API (events, identify, catalog) "
                 "to exercise the pipeline end to end.")
    add_delegate(sub, "demo", "streamrec.ops.demo", "demo",
                 "up + traffic + a model + sample answers, in one go",
                 "Start the embedded stack, send ~30 s of shop traffic, train a model and "
                 "print recommendations; the stack keeps running (`streamrec down` stops it).")
    add_delegate(sub, "eval", "streamrec.eval.offline", "eval",
                 "offline quality: popularity, item-kNN, ALS, streaming fold-in, blend",
                 "Evaluate on the shared datasets (Taobao, Last.fm, YOOCHOOSE), an events "
                 "file or the events topic, with a protocol per dataset; JSON + markdown.")
    add_delegate(sub, "replay", "streamrec.ops.replay", "replay",
                 "rebuild derived state from the log, or re-drive a time range",
                 "Rebuild Redis lists, statistics and the history table from the events topic "
                 "(--rebuild, from offset 0 or --from-time), or re-drive the events of a time "
                 "range at N x real time or as fast as possible (--from-time/--to-time/--speed)."
                 " Event ids make both idempotent.")
    add_delegate(sub, "load", "streamrec.ops.load", "load",
                 "backfill events from a CSV/TSV dataset or JSONL file",
                 "Backfill historical events (Taobao, Last.fm, YOOCHOOSE files of "
                 "../shared/data, or JSONL tracking events) with their original timestamps, "
                 "through the API (default) or straight to Kafka. Event ids come from file "
                 "name + line, so reloading is idempotent.")
    bench = sub.add_parser("bench", help="measure a running stack",
                           description="Measure a running stack.")
    bench.set_defaults(func=lambda _args: _help_of(bench))
    bsub = bench.add_subparsers(dest="bench_command", metavar="WHAT")
    add_delegate(bsub, "freshness", "streamrec.bench.freshness", "bench freshness",
                 "time from an event / stock change to a changed list",
                 "Measure how fast a shopper's action and a stock change show up in the "
                 "API's answers, on a running stack.")
    add_delegate(bsub, "ingest", "streamrec.bench.ingest", "bench ingest",
                 "sustained end-to-end event rate and freshness under load",
                 "Send N events through the API and measure accepted -> lists rewritten, "
                 "next to a raw aiokafka consumer and a bare Faust agent on the same topic; "
                 "then hold a fixed rate and report freshness p50/p99.")
    add_delegate(bsub, "serve", "streamrec.bench.serve", "bench serve",
                 "serving latency at fixed rates and max throughput vs. a bare endpoint",
                 "Start Redis, the API and a bare FastAPI endpoint, load realistic lists, and "
                 "measure p50/p99 at fixed request rates (open loop) and the maximum "
                 "throughput of both, with the load generator in its own process.")

    topics = sub.add_parser("topics", help="manage Kafka topics",
                            description="Manage the Kafka topics streamrec uses.")
    topics.set_defaults(func=lambda _args: _help_of(topics))
    tsub = topics.add_subparsers(dest="topics_command", metavar="ACTION")
    tc = tsub.add_parser("create", help="create the events, catalog and dead-letter topics",
                         description="Create the events, catalog (compacted) and dead-letter\n"
                         "topics if absent (STREAMREC_TOPIC_*, STREAMREC_TOPIC_PARTITIONS).",
                         formatter_class=fmt)
    tc.set_defaults(func=cmd_topics_create)

    p = add("config", cmd_config, "print the effective settings (the configuration reference)",
            "Print every setting as its STREAMREC_* environment variable with the effective\n"
            "value (secrets masked) and what it does.")
    p.add_argument("--json", action="store_true", help="print JSON")
    return parser


def _help_of(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 0


# --------------------------------------------------------------------------- errors


def _user_error(exc: BaseException) -> str | None:
    """The one-line message for an error the user can fix, or None for a bug."""
    from streamrec.stack.embedded import StackError
    from streamrec.stack.servers import PrerequisiteMissing

    if isinstance(exc, CliError | StackError | PrerequisiteMissing):
        return str(exc)
    module = type(exc).__module__
    if module.startswith("pydantic"):
        from pydantic import ValidationError

        if isinstance(exc, ValidationError):
            problems = [
                f"STREAMREC_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
                for err in exc.errors()
            ]
            return "invalid configuration: " + "; ".join(problems)
    if module.startswith("redis"):
        import redis.exceptions as rex

        if isinstance(exc, rex.ConnectionError | rex.TimeoutError):
            return f"cannot reach Redis: {exc} (run `streamrec up`, or set STREAMREC_REDIS_URL)"
        if isinstance(exc, rex.AuthenticationError):
            return f"Redis refused the credentials in STREAMREC_REDIS_URL: {exc}"
    if module.startswith("kafka"):
        import kafka.errors as kex

        # NoBrokersAvailable is gone from kafka-python 3: look the names up defensively.
        kinds = tuple(getattr(kex, n) for n in ("NoBrokersAvailable", "KafkaConnectionError",
                                                "KafkaTimeoutError") if hasattr(kex, n))
        if isinstance(exc, kinds):
            return f"cannot reach Kafka: {exc} (run `streamrec up`, or set " \
                   "STREAMREC_KAFKA_BOOTSTRAP)"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``streamrec`` console script; returns the exit code."""
    # Before numpy/OpenBLAS load: `implicit` is ~50x faster per user single-threaded.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    parser = build_parser()
    args, extra = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 0
    try:
        if getattr(args, "passthrough", False):
            return int(args.func(args, extra))
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        return int(args.func(args))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 1
    except Exception as exc:
        message = _user_error(exc)
        if message is None:
            raise
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
