"""The burst benchmark's summary: medians over runs, one column per broker, as
docs/benchmarks.md shows it (:mod:`streamrec.bench.burst` measures)."""

from __future__ import annotations

import shlex
import statistics
import sys
from collections.abc import Callable, Sequence
from typing import Any

from core.ops_records import FRESHNESS_BUCKETS_MS

Report = dict[str, Any]

#: (row label, how to read it from one run's report); None when the run lacks it.
ROWS: list[tuple[str, Callable[[Report], float | None]]] = [
    ("the machine: a fixed Python loop before the burst (ms; lower is faster)",
     lambda r: r["python_loop_ms"]),
    ("burst end to end: events ÷ time to lag 0 (events/s)",
     lambda r: r["burst"]["events_per_s"]),
    ("burst: time to lag 0 (s)", lambda r: r["burst"]["lag0_seconds"]),
    ("burst: time until every waiting list is written (s)",
     lambda r: r["burst"]["lists_current_seconds"]),
    ("burst: API accept rate (events/s)", lambda r: r["burst"]["accept_events_per_s"]),
    ("burst: retrains started by it", lambda r: r["burst"]["retrains"]),
    ("freshness p50 at the held rate (ms)", lambda r: r["freshness"].get("p50_ms")),
    ("freshness p99 at the held rate (ms)", lambda r: r["freshness"].get("p99_ms")),
    ("freshness p50 at the held rate from outside (ms: 202 → changed list through the API, "
     "two probes a second, polls of 10 ms)", lambda r: r["freshness"]["outside"]["p50_ms"]),
    ("freshness p99 at the held rate from outside (ms)",
     lambda r: r["freshness"]["outside"]["p99_ms"]),
    ("re-fold delay p50 at the held rate (ms)", lambda r: r["freshness"].get("refold_p50_ms")),
    ("re-fold delay p99 at the held rate (ms; at least this when it is the histogram's top "
     f"bound, {FRESHNESS_BUCKETS_MS[-1]:,})", lambda r: r["freshness"].get("refold_p99_ms")),
    ("lone event after idle → changed list p50 (ms)", lambda r: r["lone"].get("p50_ms")),
    ("lone event after idle → changed list p99 (ms)", lambda r: r["lone"].get("p99_ms")),
    ("infrastructure ceiling: API + broker + no-op worker (events/s)",
     lambda r: r["ceiling"]["events_per_s"]),
    ("retrain of --train-events interactions (1M by default): seconds to a live version",
     lambda r: r["retrain"]["seconds"]),
    ("retrain: read the log into the matrix (s)", lambda r: r["retrain"]["stages"]["read"]),
    ("retrain: fit ALS (s)", lambda r: r["retrain"]["stages"]["fit"]),
    ("retrain: similar lists and swap (s)",
     lambda r: r["retrain"]["stages"]["similar"] + r["retrain"]["stages"]["swap"]),
    ("retrain, after the swap: plain lists of users without one (s)",
     lambda r: r["retrain"]["stages"]["user_lists"]),
]

#: CPU rows: process name in the burst and in the ceiling.
CPU = [("api", "API"), ("broker", "broker"), ("redis", "Redis"), ("workers", "workers"),
       ("retrain", "retrain processes"), ("noop_worker", "no-op worker")]


def median(values: list[float | None]) -> float | None:
    """The median of the values present (None when none is)."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}".rstrip("0").rstrip(".")


def _cell(runs: list[Report], read: Callable[[Report], float | None]) -> str:
    values = [_safe(read, r) for r in runs]
    each = ", ".join(_fmt(v) for v in values)
    return f"**{_fmt(median(values))}** ({each})" if len(runs) > 1 else _fmt(values[0])


def _safe(read: Callable[[Report], float | None], report: Report) -> float | None:
    try:
        return read(report)
    except (KeyError, TypeError):
        return None


def _cpu(phase: str, name: str, field: str = "cpu_us_per_event"
         ) -> Callable[[Report], float | None]:
    """Reads one process's CPU per event of one phase."""
    def read(report: Report) -> float | None:
        value = report[phase][field].get(name)
        return None if value is None else float(value)
    return read


def burst_table(runs: dict[str, list[Report]], names: dict[str, str]) -> str:
    """Markdown: a row per measurement, a column per broker; medians in bold with every
    run's value in brackets."""
    heads = [names.get(b, b) for b in runs]
    out = ["| measurement | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
    rows = list(ROWS)
    rows += [(f"CPU µs per event, burst: {label}", _cpu("burst", name))
             for name, label in CPU if name != "noop_worker"]
    rows += [(f"CPU µs per event, held rate: {label}", _cpu("freshness", name))
             for name, label in CPU if name != "noop_worker"]
    rows += [(f"CPU µs per held event, its waiting re-folds after the hold: {label}",
              _cpu("freshness", name, "refold_cpu_us_per_event"))
             for name, label in CPU if name in ("redis", "workers")]
    rows += [(f"CPU µs per event, ceiling: {label}", _cpu("ceiling", name))
             for name, label in CPU if name not in ("workers", "retrain")]
    for label, read in rows:
        out.append(f"| {label} | "
                   + " | ".join(_cell(reports, read) for reports in runs.values()) + " |")
    return "\n".join(out)


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command that ran, to reproduce it: ``streamrec`` and every argument as given
    (``sys.argv`` by default), global options such as ``-v`` included, quoted for a shell.
    (Taking ``argv[3:]`` after ``streamrec bench ingest`` turned ``streamrec -v bench
    ingest --burst`` into ``streamrec bench ingest ingest --burst``.)"""
    args = list(sys.argv if argv is None else argv)[1:]
    return " ".join(["streamrec", *(shlex.quote(a) for a in args)])


def reproduce(report: Report, out: Any) -> str:
    """The lines under a bench's table: the command that reproduces it, the JSON's path."""
    return f"command: {report['command']}\nJSON: {out}"
