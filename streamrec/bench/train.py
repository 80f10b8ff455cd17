"""``streamrec bench train``: how long a full retrain of 1,000,000 interactions takes, from
the log to a live version, on a running stack, with settings compared side by side.

Produces the interactions once to a topic of its own (as ``bench ingest --burst`` does:
:func:`streamrec.bench.train_time.produce_interactions`), then retrains on it ``--runs``
times per variant (each ``--iterations`` value with each ``--cg-steps`` value), the
variants taking turns within each run, so a comparison shares the machine's mood. Each
retrain is the worker's (:func:`stream.retrain.train_and_publish` with every core, as
its niced retrain process runs it) under a Redis key prefix of its own: the stack's live
model, lists and retrain lock are not touched, and the bench deletes its keys (and its
topic) afterwards. The plain lists of users without one, which a retrain writes after
the swap, are skipped: the target counts log → live version.

Reports per variant the median and every run of: seconds to the live version and the
stages (read the log into the matrix, fit ALS, similar lists, swap); CPU seconds of this
process and its children (the reading processes). JSON in ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from core.settings import Settings
from streamrec.bench.options import (
    MAX_ENTITIES,
    command_line,
    finish,
    stops_on_sigterm,
    whole,
)

#: Stages reported per run, in order.
STAGES = ("read", "fit", "similar", "swap")


#: The most ALS iterations or CG steps one variant runs.
MAX_STEPS = 1_000


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``streamrec bench train``."""
    parser.add_argument("--events", type=whole(1, MAX_ENTITIES), default=1_000_000,
                        help="interactions (default: 1000000)")
    parser.add_argument("--shoppers", type=whole(1, MAX_ENTITIES), default=100_000,
                        help="shoppers (default: 100000)")
    parser.add_argument("--items", type=whole(1, MAX_ENTITIES), default=20_000,
                        help="items (default: 20000)")
    parser.add_argument("--runs", type=whole(1, 100), default=3,
                        help="retrains per setting (default: 3)")
    parser.add_argument("--iterations", type=step_list, default=None,
                        help="ALS iterations to compare, comma-separated (e.g. 10,6); "
                             "default: the setting (STREAMREC_ALS_ITERATIONS)")
    parser.add_argument("--cg-steps", type=step_list, default=None,
                        help="conjugate-gradient steps to compare, comma-separated (e.g. "
                             "3,2); default: the setting (STREAMREC_ALS_CG_STEPS)")
    parser.add_argument("--out", type=Path, default=Path("bench-results/train.json"),
                        help="the JSON result (default: bench-results/train.json)")


def step_list(raw: str) -> list[int]:
    """An argparse type: 1 to 20 comma-separated whole numbers, each from 1 to
    :data:`MAX_STEPS` (a bad list is argparse's one line and exit code 2, as for every
    other bench option; it once exited 1 without naming the command)."""
    try:
        values = [int(v) for v in raw.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"comma-separated whole numbers, got {raw!r}") from None
    if not values or not all(1 <= v <= MAX_STEPS for v in values) or len(values) > 20:
        raise argparse.ArgumentTypeError(
            f"1 to 20 numbers from 1 to {MAX_STEPS}, got {raw!r}")
    return values


step_list.__name__ = "list of whole numbers"  # argparse names the type in its messages


def _cpu_s() -> float:
    """CPU seconds (user + system) of this process and its waited-for children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _drop_keys(settings: Settings, prefix: str) -> int:
    """Delete every key under ``prefix``; how many."""
    from core.redis_client import sync_client, unlink_matching

    client = sync_client(settings)
    try:
        return unlink_matching(client, f"{prefix}*")
    finally:
        client.close()


def _drop_topic(settings: Settings, topic: str) -> None:
    """Delete the bench's topic (a broker that refuses keeps it; it is only data)."""
    from core.topics import admin_client

    try:
        admin = admin_client(settings)
        try:
            admin.delete_topics([topic])
        finally:
            admin.close()
    except Exception as exc:  # noqa: BLE001 - cleanup only: say so and go on
        print(f"note: topic {topic} was not deleted ({type(exc).__name__}: {exc})",
              file=sys.stderr)


def retrain_once(settings: Settings, topic: str, iterations: int, cg_steps: int = 3
                 ) -> dict[str, Any]:
    """One retrain on ``topic`` with these ALS settings under a key prefix of its own."""
    from core.redis_keys import RedisKeys
    from stream.retrain import train_and_publish

    prefix = f"bench-train-{uuid.uuid4().hex[:6]}:"
    # any --events is timed: the worker's minimum (STREAMREC_RETRAIN_MIN_EVENTS) guards
    # the live model, not this prefix of its own (below it the bench ended in a traceback)
    local = settings.model_copy(update={"topic_events": topic, "als_iterations": iterations,
                                        "als_cg_steps": cg_steps, "require_catalog": False,
                                        "retrain_min_events": 1})
    cpu = _cpu_s()
    try:
        result = train_and_publish(local, wait_live_s=0, keys=RedisKeys(prefix), threads=0,
                                   write_user_lists=False)
    finally:
        _drop_keys(settings, prefix)
    return {"iterations": iterations, "cg_steps": cg_steps,
            "variant": f"{iterations} × {cg_steps}", "seconds": round(result.seconds, 2),
            "stages": {k: result.stages.get(k) for k in STAGES},
            "cpu_seconds": round(_cpu_s() - cpu, 2), "n_users": result.n_users,
            "n_items": result.n_items, "n_events": result.n_events}


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per variant (``iterations × cg_steps``): medians of the seconds, stages and CPU,
    with every run's."""
    out: dict[str, Any] = {}
    for value in dict.fromkeys(r["variant"] for r in runs):
        mine = [r for r in runs if r["variant"] == value]
        out[value] = {
            "seconds": [r["seconds"] for r in mine],
            "median_seconds": statistics.median(r["seconds"] for r in mine),
            "median_stages": {k: statistics.median(r["stages"][k] or 0.0 for r in mine)
                              for k in STAGES},
            "median_cpu_seconds": statistics.median(r["cpu_seconds"] for r in mine),
        }
    return out


def report_table(summary: dict[str, Any]) -> str:
    """A Markdown table of :func:`summarize`'s result."""
    lines = ["| ALS iterations × CG steps | log → live version (s), median (runs) | "
             "read / fit / similar / swap (s) | CPU s |", "|---:|---|---|---:|"]
    for value, row in summary.items():
        stages = " / ".join(f"{row['median_stages'][k]:.2f}" for k in STAGES)
        runs = ", ".join(f"{s:.2f}" for s in row["seconds"])
        lines.append(f"| {value} | **{row['median_seconds']:.2f}** ({runs}) | {stages} | "
                     f"{row['median_cpu_seconds']:.1f} |")
    return "\n".join(lines)


@stops_on_sigterm
def run(args: argparse.Namespace) -> int:
    """Produce once, retrain ``--runs`` × each value, report; JSON to ``--out``."""
    from core.kafka_tools import create_topics
    from core.settings import get_settings
    from streamrec.bench.train_time import produce_interactions

    settings = get_settings()
    variants = [(it, cg) for it in (args.iterations or [settings.als_iterations])
                for cg in (args.cg_steps or [settings.als_cg_steps])]
    topic = f"bench-train-{uuid.uuid4().hex[:6]}"
    local = settings.model_copy(update={"topic_events": topic})
    create_topics(local)
    runs: list[dict[str, Any]] = []
    try:  # the topic goes whatever happens once it exists (Ctrl-C while producing too)
        print(f"producing {args.events:,} interactions to {topic} ...", flush=True)
        produce_s = asyncio.run(produce_interactions(local, topic, args.events,
                                                     shoppers=args.shoppers, items=args.items))
        for k in range(args.runs):
            for iterations, cg_steps in variants:
                started = time.strftime("%H:%M:%S")
                result = retrain_once(settings, topic, iterations, cg_steps)
                runs.append(result)
                print(f"run {k + 1}/{args.runs} at {started}, {iterations} iterations × "
                      f"{cg_steps} CG steps: "
                      f"{result['seconds']:.2f} s ({result['stages']})", flush=True)
    finally:
        _drop_topic(settings, topic)
    summary = summarize(runs)
    report = {"command": command_line(),
              "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "events": args.events,
              "shoppers": args.shoppers, "items": args.items,
              "produce_seconds": round(produce_s, 2), "runs": runs, "summary": summary}
    last = finish(report, args.out)
    print(report_table(summary))
    print(last)
    return 0
