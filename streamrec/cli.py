"""The ``streamrec`` command line: run the stack, the processes, and the operator tools.

This module is the parser and the entry point; the commands are in
:mod:`streamrec.commands` (or, for the bigger tools, in the module each delegates to).
Every command imports what it needs inside its function, so ``streamrec --help`` is fast
and works even while a subsystem is missing. Errors a user can cause (a port in use, an
unreachable server, a missing binary, a bad setting) print one line to stderr and exit
non-zero; a traceback means a bug.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from streamrec import __version__
from streamrec.arg_types import number, whole
from streamrec.commands import (
    PROG,
    CliError,
    cmd_api,
    cmd_config,
    cmd_down,
    cmd_rebuild,
    cmd_status,
    cmd_topics_create,
    cmd_train,
    cmd_up,
    cmd_worker,
    delegate,
)

__all__ = ["CliError", "build_parser", "main"]


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


_FMT = argparse.RawDescriptionHelpFormatter
#: The longest wait any ``--timeout`` takes (a day).
MAX_TIMEOUT_S = 86_400.0


def _seconds(text: str) -> float:
    """An argparse type: seconds to wait, 0 to a day."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value <= MAX_TIMEOUT_S:  # NaN fails both
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and {MAX_TIMEOUT_S:.0f}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of every subcommand (cheap: imports nothing)."""
    parser = argparse.ArgumentParser(prog=PROG, description=_DESCRIPTION, epilog=_EPILOG,
                                     formatter_class=_FMT)
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log everything (DEBUG) to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_stack_commands(sub)
    _add_tool_commands(sub)
    _add_bench_commands(sub)
    _add_topics_and_config(sub)
    return parser


def _add(sub: Any, name: str, func: Callable[..., int], help_text: str, description: str
         ) -> argparse.ArgumentParser:
    """A subcommand run by ``func(args)``."""
    p: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=description,
                                                formatter_class=_FMT)
    p.set_defaults(func=func)
    return p


def _add_delegate(subs: Any, name: str, module: str, prog: str, help_text: str,
                  description: str) -> None:
    """A subcommand whose options and body live in ``module`` (see ``delegate``)."""
    p = subs.add_parser(name, add_help=False, help=help_text, description=description)
    p.set_defaults(func=delegate(module, prog, description), passthrough=True)


def _add_stack_commands(sub: Any) -> None:
    """up, down, status, worker, api, train, rebuild: the stack and its processes."""
    p = _add(sub, "up", cmd_up, "start the embedded stack in the background",
             "Start a Kafka broker and a redis-server (unless STREAMREC_KAFKA_BOOTSTRAP /\n"
             "STREAMREC_REDIS_URL point at external ones), create the topics, start the\n"
             "workers (--workers: one per core, at most one per partition, by default) and\n"
             "API processes (one by default); wait until the API is ready and they consume.\n"
             "Running it again keeps what runs and restarts only what died;\n"
             "--restart also replaces the running workers and API processes one by one.\n"
             "Brokers: tansu (default; the log is in memory and gone after `down`) or kafka\n"
             "(Apache Kafka from Maven jars, needs Java 17+; its log is in .streamrec/kafka\n"
             "and Redis keeps an append-only file in .streamrec/redis, so `down` then\n"
             "`up --broker kafka` keeps every event, the model and every list).\n"
             "State: .streamrec/stack.json, logs: .streamrec/logs/ (STREAMREC_STATE_DIR).")
    p.add_argument("--timeout", type=_seconds, default=60.0, metavar="S",
                   help="seconds to wait for readiness (default: 60)")
    p.add_argument("--broker", choices=("tansu", "kafka"), default=None,
                   help="embedded broker (default: STREAMREC_BROKER, else the running one, "
                        "else tansu)")
    p.add_argument("--brokers", type=int, default=None, metavar="N",
                   help="Apache Kafka nodes: a KRaft cluster on loopback; 3 gives topics 3 "
                        "replicas and min.insync.replicas 2 (default: STREAMREC_KAFKA_BROKERS, "
                        "else as running, else 1)")
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes; they split the partitions (default: "
                        "STREAMREC_WORKERS, else as running, else one per core up to the "
                        "partitions)")
    p.add_argument("--redis", choices=("standalone", "cluster"), default=None, dest="redis_mode",
                   help="one redis-server, or a Redis Cluster on loopback (3 masters with a "
                        "replica each; STREAMREC_REDIS_CLUSTER_MASTERS/_REPLICAS) (default: "
                        "STREAMREC_REDIS_MODE, else as running, else standalone)")
    p.add_argument("--api-processes", type=int, default=None, metavar="M",
                   help="API processes sharing the API port (default: "
                        "STREAMREC_API_PROCESSES, else as running, else 1)")
    p.add_argument("--restart", action="store_true",
                   help="replace the running workers and API processes one at a time, "
                        "each after its replacement is ready (a rolling restart: new code "
                        "or settings take effect while the others keep serving)")

    p = _add(sub, "down", cmd_down, "stop everything `up` started",
             "Stop the API, the worker, redis-server and the broker that `streamrec up`\n"
             "recorded (SIGTERM, then SIGKILL), and remove the state file. Safe to run when\n"
             "nothing runs. External servers are never touched.")
    p.add_argument("--timeout", type=_seconds, default=10.0, metavar="S",
                   help="seconds each process gets to exit before SIGKILL (default: 10)")

    p = _add(sub, "status", cmd_status, "show lag, counters, model, workers and processes",
             "Topic end offsets, the worker group's committed offsets and lag, processed and\n"
             "dead-lettered counts (with the last reasons), freshness, the live model, its age\n"
             "and training history, worker heartbeats, Redis memory and its limit, and which\n"
             "processes of `streamrec up` run: the numbers the dashboard (/dashboard) shows.\n"
             "Exit code 1 when Kafka or Redis cannot be reached or a process `streamrec up`\n"
             "recorded no longer runs (the output says which; no Kafka: lag unknown/null).")
    p.add_argument("--json", action="store_true",
                   help="print JSON (keys include lag, processed, model_version)")

    _add(sub, "worker", cmd_worker, "run one stream worker in the foreground",
         "Run one Faust worker process: consumes events and catalog, keeps Redis lists\n"
         "current, heartbeats into Redis. Start more for more throughput (partitions are\n"
         "split between them). Stop with Ctrl-C / SIGTERM.")
    _add(sub, "api", cmd_api, "run the HTTP API in the foreground",
         "Run the FastAPI service on STREAMREC_API_HOST:STREAMREC_API_PORT\n"
         "(endpoints /v1/..., /readyz, /docs, /metrics).")

    _add_train(sub)

    _add(sub, "rebuild", cmd_rebuild, "rebuild Redis from the Kafka log",
         "Replay the catalog and events topics from offset 0 into Redis through the worker's\n"
         "own processor (each event applied once, by event id). Use after Redis was flushed\n"
         "or restarted empty; running workers also do this by themselves within seconds.\n"
         "Safe to run any time and while the stack runs; one at a time: it takes the\n"
         "rebuild lock the workers' rebuilds and wipes (and `replay --rebuild`) take, and\n"
         "while another holds it, says so and exits 1. `streamrec train` restores the model.")


def _add_train(sub: Any) -> None:
    """train: a model now, live once the workers serve it."""
    p = _add(sub, "train", cmd_train, "train a model now and wait until it is live",
             "Read the whole events topic, train ALS, publish the new model version to Redis\n"
             "and wait until a worker serves it; prints the version. On a terminal, progress\n"
             "bars on stderr follow each stage: wait for retrain (seconds of --busy-wait,\n"
             "only while another retrain runs), read (messages of the log), fit (ALS\n"
             "iterations), similar and user lists (lists written), live (workers serving\n"
             "the new version, of those running); none when stdout or stderr is not a\n"
             "terminal, or with --no-progress.")
    p.add_argument("--timeout", type=_seconds, default=30.0, metavar="S",
                   help="seconds to wait for workers to switch to the new model (default: 30)")
    p.add_argument("--busy-wait", type=number(0, MAX_TIMEOUT_S), default=900.0, metavar="S",
                   help="when a retrain (e.g. the worker's scheduled one) is already running, "
                        "wait up to this many seconds for it to finish, then train "
                        "(default: 900; 0 = fail at once)")
    p.add_argument("--threads", type=whole(0, os.cpu_count() or 1), default=1, metavar="N",
                   help="cores to train with: ALS solver threads, and processes reading a "
                        "large log, at most the machine's cores (default: 1, beside running "
                        "workers; 0 = every core, as the worker's scheduled retrain)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars (there are none anyway when stdout or stderr is "
                        "not a terminal)")


def _add_tool_commands(sub: Any) -> None:
    """simulate, demo, eval, replay, experiments, load: tools whose options live in their
    modules."""
    _add_delegate(sub, "simulate", "streamrec.sim.simulate", "simulate",
                  "send synthetic shoppers' traffic to the API",
                  "Send synthetic shoppers' traffic to the API (events, identify, catalog) "
                  "to exercise the pipeline end to end.")
    _add_delegate(sub, "demo", "streamrec.ops.demo", "demo",
                  "up + traffic + a model + sample answers, in one go",
                  "Start the embedded stack, send ~30 s of shop traffic, train a model and "
                  "print recommendations; the stack keeps running (`streamrec down` stops it).")
    _add_delegate(sub, "eval", "streamrec.eval.offline", "eval",
                  "offline quality: popularity, item-kNN, ALS, streaming fold-in, blend",
                  "Evaluate on the shared datasets (Taobao, Last.fm, YOOCHOOSE), an events "
                  "file or the events topic, with a protocol per dataset; JSON + markdown.")
    _add_delegate(sub, "replay", "streamrec.ops.replay", "replay",
                  "rebuild derived state from the log, or re-drive a time range",
                  "Rebuild Redis lists, statistics and the history table from the events topic "
                  "(--rebuild, from offset 0 or --from-time), or re-drive the events of a time "
                  "range at N x real time or as fast as possible (--from-time/--to-time/--speed)."
                  " Event ids make both idempotent. --rebuild takes the rebuild lock: while "
                  "a worker or `streamrec rebuild` rebuilds, it says so and exits 1.")
    _add_delegate(sub, "experiments", "streamrec.ops.experiments", "experiments",
                  "list experiments, or report one's outcomes, lift and SRM",
                  "List the defined experiments (list), or print one experiment's outcomes "
                  "per variant, the lift over the control with 95 % intervals and the "
                  "sample-ratio-mismatch test (report ID [--json]), read from Redis.")
    _add_delegate(sub, "load", "streamrec.ops.load", "load",
                  "backfill events from a CSV/TSV dataset or JSONL file",
                  "Backfill historical events (Taobao, Last.fm, YOOCHOOSE files of "
                  "../shared/data, or JSONL tracking events) with their original timestamps, "
                  "through the API (default) or straight to Kafka. Event ids come from file "
                  "name + line, so reloading is idempotent.")


def _add_bench_commands(sub: Any) -> None:
    """bench freshness, ingest, serve, train, dashboard: measurements of a running stack."""
    bench = sub.add_parser("bench", help="measure a running stack",
                           description="Measure a running stack.")
    bench.set_defaults(func=lambda _args: _help_of(bench))
    bsub = bench.add_subparsers(dest="bench_command", metavar="WHAT")
    _add_delegate(bsub, "freshness", "streamrec.bench.freshness", "bench freshness",
                  "time from an event / stock change to a changed list",
                  "Measure how fast a shopper's action and a stock change show up in the "
                  "API's answers, on a running stack.")
    _add_delegate(bsub, "ingest", "streamrec.bench.ingest", "bench ingest",
                  "sustained end-to-end event rate and freshness under load",
                  "Send N events through the API and measure accepted -> lists rewritten, "
                  "next to a raw aiokafka consumer and a bare Faust agent on the same topic; "
                  "then hold a fixed rate and report freshness p50/p99.")
    _add_delegate(bsub, "serve", "streamrec.bench.serve", "bench serve",
                  "serving latency at fixed rates and max throughput vs. a bare endpoint",
                  "Start Redis, the API and a bare FastAPI endpoint, load realistic lists, and "
                  "measure p50/p99 at fixed request rates (open loop) and the maximum "
                  "throughput of both, with the load generator in its own process.")
    _add_delegate(bsub, "train", "streamrec.bench.train", "bench train",
                  "seconds from the log to a live model for 1,000,000 interactions",
                  "On a running stack, produce 1,000,000 interactions to a topic of their own "
                  "and time full retrains on them (read, fit, similar lists, swap) under a "
                  "key prefix of their own, comparing ALS iteration counts side by side.")
    _add_delegate(bsub, "dashboard", "streamrec.bench.dashboard", "bench dashboard",
                  "what an open dashboard costs the API, as a share of its serving capacity",
                  "On a running stack, measure the API process's extra CPU while one and ten "
                  "dashboards refresh, against its CPU per recommendation request.")


def _add_topics_and_config(sub: Any) -> None:
    """topics create, config."""
    topics = sub.add_parser("topics", help="manage Kafka topics",
                            description="Manage the Kafka topics streamrec uses.")
    topics.set_defaults(func=lambda _args: _help_of(topics))
    tsub = topics.add_subparsers(dest="topics_command", metavar="ACTION")
    tc = tsub.add_parser("create", help="create the events, catalog, dead-letter, forgotten "
                                        "and history changelog topics",
                         description="Create the events, catalog (compacted), dead-letter,\n"
                         "forgotten (compacted, kept forever) and history changelog (the\n"
                         "workers' table, compacted) topics if absent, with their\n"
                         "retention (forever by default), replicas and min.insync.replicas\n"
                         "(STREAMREC_TOPIC_*). Idempotent: an existing topic is never changed;\n"
                         "one whose partitions, replicas or configs differ from the settings\n"
                         "is reported as drifted (exit code 0).",
                         formatter_class=_FMT)
    tc.set_defaults(func=cmd_topics_create)

    p = _add(sub, "config", cmd_config,
             "print the effective settings (the configuration reference)",
             "Print every setting as its STREAMREC_* environment variable with the effective\n"
             "value (secrets masked) and what it does.")
    p.add_argument("--json", action="store_true", help="print JSON")


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
                (f"STREAMREC_{'_'.join(str(p) for p in err['loc']).upper()}: "
                 if err["loc"] else "") + err["msg"]
                for err in exc.errors()
            ]
            return "invalid configuration: " + "; ".join(problems)
    if module.startswith("redis"):
        import redis.exceptions as rex

        from core.connections import redis_refusal

        # Before ConnectionError: AuthenticationError is one, and a wrong password read
        # "cannot reach Redis ... run `streamrec up`".
        refusal = redis_refusal(exc)
        if refusal:
            return refusal
        if isinstance(exc, rex.ConnectionError | rex.TimeoutError):
            return f"cannot reach Redis: {exc} (run `streamrec up`, or set STREAMREC_REDIS_URL)"
    if module.startswith("kafka"):
        import kafka.errors as kex

        # NoBrokersAvailable is gone from kafka-python 3: look the names up defensively.
        kinds = tuple(getattr(kex, n) for n in ("NoBrokersAvailable", "KafkaConnectionError",
                                                "KafkaTimeoutError") if hasattr(kex, n))
        if isinstance(exc, kinds):
            return f"cannot reach Kafka: {exc} (run `streamrec up`, or set " \
                   "STREAMREC_KAFKA_BOOTSTRAP)"
    if module.startswith("httpx"):
        return _http_error(exc)
    return None


def _http_error(exc: BaseException) -> str | None:
    """The one line for an HTTP tool's (e.g. ``bench freshness``) unreachable API or an
    answer it did not expect (a missing key's 401, say)."""
    import httpx

    if isinstance(exc, httpx.HTTPStatusError):
        response = exc.response
        return (f"the API answered {response.status_code} to {exc.request.method} "
                f"{exc.request.url}: {response.text[:200]} (check the STREAMREC_*_KEYS "
                "this command sends)")
    if isinstance(exc, httpx.TransportError):
        try:
            where = f" at {exc.request.url.scheme}://{exc.request.url.netloc.decode()}"
        except RuntimeError:  # an error raised without its request
            where = ""
        return f"cannot reach the API{where}: {exc} (run `streamrec up`, or pass --api-url)"
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
