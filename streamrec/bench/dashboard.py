"""``streamrec bench dashboard``: what an open dashboard costs the API, in serving capacity.

Against a running stack (``streamrec up``; the API's pid comes from its state file, or
``--api-pid``), measuring only the API process's CPU time (``/proc``, user + system, all
its threads: the dashboard's pipeline probe runs in a worker thread):

1. **idle** — nothing asked for ``--seconds``: the API's own background work (the
   fallback snapshot refresh) as the baseline;
2. **one dashboard** — ``GET /v1/admin/dashboard`` every ``--interval`` seconds (the page's
   refresh), as an open dashboard does;
3. **ten dashboards** — ten such viewers, staggered: a request every ``interval / 10``
   seconds, so the cached aggregate (recomputed at most every 2 s) is shared;
4. **serving** — ``--requests`` recommendation requests (``GET
   /v1/users/{id}/recommendations?n=10``) over four keep-alive connections: the API's CPU
   per request, whose inverse is its serving capacity on one core.

The dashboard's share of capacity is its extra CPU per second (phase minus idle) divided
by one core: the fraction of the requests per second the API could have served instead.
Results go to JSON (``--out``) and a table on stdout, which ends with the command that
reproduces it and the JSON's path.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from streamrec.arg_types import api_url
from streamrec.bench.loadgen import cpu_seconds
from streamrec.bench.options import finish, number, stops_on_sigterm, whole


def _api_cpu(pid: int) -> float:
    return cpu_seconds({"api": pid})["api"]


def _idle(pid: int, seconds: float) -> dict[str, Any]:
    before = _api_cpu(pid)
    time.sleep(seconds)
    return {"seconds": seconds, "api_cpu_s": _api_cpu(pid) - before}


def _viewers(client: httpx.Client, pid: int, *, seconds: float, interval: float,
             viewers: int, key: str) -> dict[str, Any]:
    """``viewers`` dashboards refreshing every ``interval`` s, staggered, for ``seconds``."""
    step = interval / viewers
    aggregates: set[float] = set()
    requests = errors = 0
    before = _api_cpu(pid)
    start = time.monotonic()
    while (due := start + requests * step) < start + seconds:
        time.sleep(max(0.0, due - time.monotonic()))
        response = client.get("/v1/admin/dashboard", headers={"X-API-Key": key})
        requests += 1
        if response.status_code == 200:
            aggregates.add(response.json()["generated_at"])
        else:
            errors += 1
    elapsed = time.monotonic() - start
    return {"viewers": viewers, "interval_s": interval, "seconds": round(elapsed, 2),
            "requests": requests, "errors": errors, "aggregates": len(aggregates),
            "api_cpu_s": _api_cpu(pid) - before}


def _serving(base: str, pid: int, *, requests: int, key: str, users: int = 1000,
             connections: int = 4) -> dict[str, Any]:
    """``requests`` recommendation requests over ``connections`` keep-alive connections."""
    counts = [0] * connections
    failures = [0] * connections

    def work(k: int) -> None:
        with httpx.Client(base_url=base, timeout=10.0) as client:
            for i in range(k, requests, connections):
                r = client.get(f"/v1/users/u{i % users}/recommendations?n=10",
                               headers={"X-API-Key": key})
                counts[k] += 1
                failures[k] += r.status_code != 200

    threads = [threading.Thread(target=work, args=(k,)) for k in range(connections)]
    before = _api_cpu(pid)
    start = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - start
    cpu = _api_cpu(pid) - before
    return {"requests": sum(counts), "errors": sum(failures), "seconds": round(elapsed, 2),
            "api_cpu_s": cpu, "cpu_us_per_request": round(cpu / max(1, sum(counts)) * 1e6, 1)}


def summarize(phases: dict[str, Any]) -> dict[str, Any]:
    """Extra API CPU per second of each dashboard phase over idle, and that as a share of
    the serving capacity measured in the same run."""
    idle_rate = phases["idle"]["api_cpu_s"] / phases["idle"]["seconds"]
    per_request_s = phases["serving"]["cpu_us_per_request"] / 1e6
    out: dict[str, Any] = {
        "idle_api_cpu_ms_per_s": round(idle_rate * 1000, 2),
        "serving_cpu_us_per_request": phases["serving"]["cpu_us_per_request"],
        "serving_capacity_rps_one_core": round(1 / per_request_s) if per_request_s else None,
    }
    for name in ("one_dashboard", "ten_dashboards"):
        phase = phases[name]
        extra = max(0.0, phase["api_cpu_s"] / phase["seconds"] - idle_rate)
        out[name] = {
            "extra_api_cpu_ms_per_s": round(extra * 1000, 2),
            "cpu_ms_per_aggregate": round(extra * phase["seconds"] / max(1, phase["aggregates"])
                                          * 1000, 2),
            "share_of_capacity_pct": round(extra * 100, 3),
            "recommendations_per_s_forgone": round(extra / per_request_s, 1)
            if per_request_s else None,
        }
    return out


def table(summary: dict[str, Any]) -> str:
    """The Markdown table of docs/benchmarks.md's "Dashboard" section, from
    :func:`summarize`'s result."""
    lines = ["| phase | API CPU over idle | per aggregate | share of serving capacity | "
             "recommendations/s forgone |", "|---|---:|---:|---:|---:|",
             f"| idle (baseline) | {summary['idle_api_cpu_ms_per_s']} ms/s | — | — | — |"]
    for name, label in (("one_dashboard", "one dashboard"),
                        ("ten_dashboards", "ten dashboards")):
        row = summary[name]
        lines.append(f"| {label} | {row['extra_api_cpu_ms_per_s']} ms/s | "
                     f"{row['cpu_ms_per_aggregate']} ms | **{row['share_of_capacity_pct']} %** "
                     f"| {row['recommendations_per_s_forgone']} |")
    lines.append(f"\nserving: {summary['serving_cpu_us_per_request']} µs of API CPU per "
                 f"recommendation request ({summary['serving_capacity_rps_one_core']} "
                 "requests/s on one core)")
    return "\n".join(lines)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``streamrec bench dashboard``."""
    parser.add_argument("--api-url", type=api_url, default=None,
                        help="API base URL (default: the stack's)")
    parser.add_argument("--api-pid", type=whole(1, 2**22), default=None,
                        help="pid of the API process (default: from the stack's state file)")
    parser.add_argument("--seconds", type=number(0, 3600, allow_low=False), default=60.0,
                        help="length of each phase (default: 60)")
    parser.add_argument("--interval", type=number(0, 3600, allow_low=False), default=5.0,
                        help="seconds between one viewer's refreshes (default: 5, the page's)")
    parser.add_argument("--requests", type=whole(1, 10_000_000), default=5000,
                        help="recommendation requests of the serving phase (default: 5000)")
    parser.add_argument("--out", type=Path, default=Path("bench-results/dashboard.json"),
                        help="the JSON result (default: bench-results/dashboard.json)")


@stops_on_sigterm
def run(args: argparse.Namespace) -> int:
    """Measure the four phases on the running stack and report."""
    from core.net import local_http_url
    from core.settings import get_settings
    from core.stack_defaults import first_key
    from streamrec.stack.embedded import load_state

    settings = get_settings()
    state = load_state(settings)
    base = args.api_url or (state.api_url if state else
                            local_http_url(settings.api_host, settings.api_port))
    pid = args.api_pid or (state.processes["api"].pid
                           if state and "api" in state.processes else None)
    if pid is None or not Path(f"/proc/{pid}/stat").exists():
        print("no API process to measure: run `streamrec up` here or pass --api-pid",
              file=sys.stderr)
        return 1
    admin = first_key(settings.admin_keys)
    read = first_key(settings.read_keys) or admin
    phases: dict[str, Any] = {}
    with httpx.Client(base_url=base, timeout=10.0) as client:
        client.get("/v1/admin/dashboard", headers={"X-API-Key": admin}).raise_for_status()
        time.sleep(3.0)  # the warm-up aggregate expires; the probe's clients stay open
        phases["idle"] = _idle(pid, args.seconds)
        phases["one_dashboard"] = _viewers(client, pid, seconds=args.seconds,
                                           interval=args.interval, viewers=1, key=admin)
        phases["ten_dashboards"] = _viewers(client, pid, seconds=args.seconds,
                                            interval=args.interval, viewers=10, key=admin)
    phases["serving"] = _serving(base, pid, requests=args.requests, key=read)
    summary = summarize(phases)
    report = {"api_url": base, "api_pid": pid, "load_avg_1m": round(os.getloadavg()[0], 2),
              "phases": phases, "summary": summary}
    last = finish(report, args.out)
    print(table(summary))
    print(last)
    return 0
