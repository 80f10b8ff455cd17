"""``streamrec bench ingest --broker tansu|kafka|both``: the ingest benchmark (or, with
``--burst``, the burst case of :mod:`streamrec.bench.burst`, ``--runs`` times) on fresh
embedded stacks, one broker after the other, reported side by side.

Each broker gets its own ``streamrec up`` (worker, API and redis-server alike, retrains
off) in a temporary state directory under the ``--out`` directory, the same four phases
of :func:`streamrec.bench.ingest.measure`, and ``streamrec down``; the state directory is
removed afterwards. Running them in one command on one machine keeps the comparison fair:
same code, same load generator, same events, minutes apart.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from core.settings import Settings
from streamrec.bench.burst_report import burst_table, command_line
from streamrec.bench.options import finish

BROKERS = {"tansu": ("tansu",), "kafka": ("kafka",), "both": ("tansu", "kafka")}
NAMES = {"tansu": "Tansu", "kafka": "Apache Kafka"}


def run_on_brokers(args: argparse.Namespace) -> int:
    """Measure on each broker ``args.broker`` names (``--runs`` times, brokers taking
    turns, with ``--burst``); JSON to ``--out``, a table to stdout."""
    runs: dict[str, list[dict[str, Any]]] = {b: [] for b in BROKERS[args.broker]}
    for run in range(max(args.runs, 1) if args.burst else 1):
        for broker in runs:
            print(f"== {NAMES[broker]} (run {run + 1}): a fresh embedded stack ...",
                  flush=True)
            runs[broker].append(_on_fresh_stack(broker, args))
    result = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "command": command_line(),
              "brokers": runs if args.burst else {b: r[0] for b, r in runs.items()}}
    last = finish(result, args.out)
    if args.burst:
        print(burst_table(runs, {b: f"{NAMES[b]} {r[0]['broker']['version']}"
                                 for b, r in runs.items()}))
    else:
        print(side_by_side({b: r[0] for b, r in runs.items()}))
    print(last)
    return 0


def _on_fresh_stack(broker: str, args: argparse.Namespace) -> dict[str, Any]:
    """``up --broker``, the four phases, ``down``; the report with the broker's name."""
    from streamrec.bench.ingest import measure
    from streamrec.stack.embedded import down, up

    args.out.parent.mkdir(parents=True, exist_ok=True)
    state_dir = Path(tempfile.mkdtemp(prefix=f"stack-{broker}-", dir=args.out.parent))
    # The burst is a new user's stack as `up` starts it: scheduled retrains on.
    update: dict[str, Any] = {"state_dir": state_dir, "broker": broker, "api_port": 0}
    if not args.burst:
        update["retrain_interval_s"] = 0
    if args.workers:  # else as many as `up` starts by default (one per core)
        update["workers"] = args.workers
    settings = Settings().model_copy(update=update)
    done = False
    try:
        state = up(settings, timeout_s=180, external_kafka=False, external_redis=False)
        rec = state.processes["kafka"]
        live = settings.model_copy(update={"kafka_bootstrap": state.kafka_bootstrap,
                                           "redis_url": state.redis_url})
        if args.burst:
            from streamrec.bench.burst import measure_burst

            report = measure_burst(live, args, state.api_url, state)
        else:
            report = measure(live, args, state.api_url, Path(state.log_dir))
        report["broker"] = {"kind": rec.broker_kind, "version": rec.version}
        done = True
        return report
    finally:
        down(settings, echo=lambda _line: None, timeout_s=30)
        if done:
            shutil.rmtree(state_dir, ignore_errors=True)
        else:  # why it failed is in the servers' logs: keep them
            print(f"the {broker} stack's logs are kept in {state_dir / 'logs'}",
                  file=sys.stderr, flush=True)


def side_by_side(reports: dict[str, dict[str, Any]]) -> str:
    """One Markdown table, a column per broker (events/s unless the row says else)."""
    def rate(part: dict[str, Any], key: str = "events_per_s") -> str:
        value = part.get(key)
        return f"{value:,}" if isinstance(value, int | float) else "-"

    rows: list[tuple[str, list[str]]] = [
        ("end to end: API accepted → lists rewritten (events/s)",
         [rate(r["end_to_end"]) for r in reports.values()]),
        ("API accept rate (events/s)",
         [rate(r["end_to_end"], "accept_events_per_s") for r in reports.values()]),
        ("raw aiokafka consumer + json.loads (events/s)",
         [rate(r["raw_aiokafka"]) for r in reports.values()]),
        ("bare Faust agent (events/s)", [rate(r["bare_faust"]) for r in reports.values()]),
        ("freshness p50 / p99 at the held rate (ms)",
         [f"{r['freshness'].get('p50_ms')} / {r['freshness'].get('p99_ms')}"
          for r in reports.values()]),
        ("load average (1 min) before → after phase 1",
         [" → ".join(str(v) for v in r["end_to_end"]["load_average_1m"])
          for r in reports.values()]),
    ]
    heads = [f"{NAMES[b]} {r['broker']['version']}".strip() for b, r in reports.items()]
    out = ["| measurement | " + " | ".join(heads) + " |",
           "|---|" + "---:|" * len(heads)]
    out += [f"| {name} | " + " | ".join(cells) + " |" for name, cells in rows]
    return "\n".join(out)
