"""``streamrec bench serve``: serving latency and throughput, side by side with a bare
FastAPI endpoint, in one run.

What runs (all local processes on this machine):

* a redis-server (our own, or ``--redis-url``) loaded with realistic lists
  (:mod:`streamrec.bench.serve_data`): ``--users`` personal lists of 100 items, a catalog
  of ``--items`` items (5 % out of stock), a few purchases per user, popular/trending
  sets, co-occurrence for sessions;
* the streamrec API (``streamrec api``, uvloop + httptools, auth on, rate limits far
  above the offered load so they are checked but never hit), and
* a *bare* FastAPI app in its own uvicorn process with the same server settings,
  returning a constant body of the same shape (10 items): the ceiling of what any
  FastAPI endpoint does on this machine;
* the load generator (:mod:`streamrec.bench.loadgen`), a separate process
  (``--loadgen``) speaking raw HTTP/1.1 over keep-alive connections with asyncio (no
  client library in the measured path).
* with ``--live-writes RATE``, a writer (:mod:`streamrec.bench.live_writes`) rewriting
  personal lists, popular and trending through every phase of both targets, as the
  worker does while shoppers read.

Fixed rates are *open loop*: request ``i`` is scheduled at ``start + i / rate`` and its
latency is measured from that scheduled time, so a stalled server is charged for every
request it delays (no coordinated omission). Maximum throughput is closed loop: a fixed
number of connections, each sending its next request when the previous answer arrived.
Requests cycle through many users' home-page lists (``--mix home``), or those with the
merchandising parameters a shop sends on half of them (``--mix merch``: a category filter,
a price band or ``max_per_category=2``, :data:`streamrec.bench.loadgen.MIXES`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from streamrec.bench.live_writes import MAX_RATE, events_written
from streamrec.bench.loadgen import MIXES, N, run_loadgen
from streamrec.bench.options import finish, number, stops_on_sigterm, whole
from streamrec.bench.serve_data import define_experiment, load_data
from streamrec.bench.serve_report import markdown, summary

#: The read key the bench configures.
BENCH_KEY = "bench-read-key-0123456"
#: Its admin key (the load generator reads the near cache's counters from ``/metrics``).
ADMIN_KEY = "bench-admin-key-012345"


# --------------------------------------------------------------------------- bare app


def bare_app() -> Any:
    """A FastAPI app whose one endpoint returns a constant list of the served shape."""
    import orjson
    from fastapi import FastAPI
    from fastapi.responses import Response

    body = orjson.dumps({
        "recommendation_id": "home.personalized.000000000000000000000000",
        "source": "personalized", "model_version": "v1", "context": "home",
        "items": [{"item_id": f"sku-{i}", "score": 1.0 - i / 100, "reason": "personalized",
                   "reason_text": "picked for you from what you viewed",
                   "name": f"Item {i}", "price": 9.99, "currency": "EUR",
                   "category": "c1", "in_stock": True} for i in range(N)],
    })
    app = FastAPI()

    @app.get("/v1/users/{user_id}/recommendations")
    async def recommendations(user_id: str, n: int = 10) -> Response:
        return Response(body, media_type="application/json")

    return app


def run_bare(port: int) -> None:
    """Serve :func:`bare_app` like ``api.server.run_api`` serves the API."""
    import uvicorn

    from api.server import server_options

    uvicorn.run(bare_app(), host="127.0.0.1", port=port, log_level="warning",
                **server_options())


# --------------------------------------------------------------------------- orchestration


def _wait_http(port: int, timeout: float = 30.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v1/users/u0/recommendations",
                         headers={"X-API-Key": BENCH_KEY}, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"nothing answered on port {port} within {timeout}s")


def _loadgen(port: int, args: argparse.Namespace, watch: dict[str, int],
             cpu: int | None, admin_key: str | None = None,
             writer_count: str | None = None) -> dict[str, Any]:
    spec = {"host": "127.0.0.1", "port": port, "users": args.users, "key": BENCH_KEY,
            "rates": args.rates, "duration": args.duration, "warmup": args.warmup,
            "watch": watch, "cpu": cpu, "mix": args.mix, "admin_key": admin_key,
            "writer_count": writer_count}
    proc = subprocess.run([sys.executable, "-m", "streamrec.bench.serve", "--loadgen",
                           json.dumps(spec)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed: {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def _pin_plan(pin: bool) -> dict[str, int] | None:
    """CPUs for the measured processes, or None when not pinning.

    With two or more CPUs the server under test (the API, later the bare endpoint: the
    same CPU for both) gets the first allowed CPU, Redis and the load generator the
    second, as in production where Redis does not share the API's core. Opt-in: it
    tests whether where the scheduler puts Redis explains run-to-run spread on a quiet
    machine; on a machine shared with other work, pinned processes cannot move away
    from the busy core (measured: worse p99, docs/benchmarks.md).
    """
    if not pin or not hasattr(os, "sched_getaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    return {"server": cpus[0], "redis": cpus[1], "loadgen": cpus[1]}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Options of ``streamrec bench serve``."""
    parser.add_argument("--rates", type=whole(1, 1_000_000), nargs="+",
                        default=[500, 1000, 2000],
                        help="fixed request rates (open loop), req/s (default: 500 1000 2000)")
    parser.add_argument("--duration", type=number(0, 3600, allow_low=False), default=10.0,
                        help="seconds per phase (default: 10)")
    parser.add_argument("--warmup", type=number(0, 3600), default=3.0,
                        help="warm-up seconds per target (default: 3)")
    parser.add_argument("--users", type=whole(1, 1_000_000), default=10000,
                        help="users with personal lists (default: 10000)")
    parser.add_argument("--items", type=whole(1, 1_000_000), default=5000,
                        help="catalog size (default: 5000)")
    parser.add_argument("--redis-url", default=None,
                        help="use this Redis (FLUSHED!) instead of starting our own")
    parser.add_argument("--repeat", type=whole(1, 100), default=1,
                        help="measure both targets N times (interleaved) and print medians "
                             "(default: 1)")
    parser.add_argument("--pin", action="store_true",
                        help="pin the server under test to one CPU, Redis and the load "
                             "generator to another (needs 2+ CPUs; on a shared machine "
                             "it made p99 worse)")
    parser.add_argument("--mix", choices=sorted(MIXES), default="home",
                        help="requests sent: home (personal lists) or merch (half of them "
                             "with a category filter, a price band or max_per_category=2) "
                             "(default: home)")
    parser.add_argument("--experiment", action="store_true",
                        help="serve inside a running holdout experiment (10 %% holdout, "
                             "every user already enrolled)")
    parser.add_argument("--live-writes", type=number(0, MAX_RATE), default=0.0,
                        metavar="RATE",
                        help="while measuring (both targets), rewrite RATE random users' "
                             "personal lists a second and popular and trending 10 times "
                             "a second, as the worker does (0 = no writes) (default: 0)")
    parser.add_argument("--out", type=Path, default=Path("bench-results/serve.json"),
                        help="the JSON result (default: bench-results/serve.json)")


def _header(args: argparse.Namespace, pins: dict[str, int] | None) -> dict[str, Any]:
    """The report's settings, before any run."""
    from api.server import server_options

    return {"rates": args.rates, "duration_s": args.duration, "mix": args.mix,
            "experiment": bool(args.experiment), "cpus": os.cpu_count(),
            "users": args.users, "items": args.items, "n": N, "pinned_cpus": pins,
            "server_options": {k: getattr(v, "__qualname__", v)
                               for k, v in server_options().items()}, "runs": []}


def _start_writer(args: argparse.Namespace, redis_url: str, work: Path,
                  env: dict[str, str]) -> Any:
    """The ``--live-writes`` process (:mod:`streamrec.bench.live_writes`), or None."""
    from streamrec.stack.servers import spawn

    if not args.live_writes:
        return None
    spec = {"redis_url": redis_url, "rate": args.live_writes, "users": args.users,
            "items": args.items, "count_path": str(work / "writer.count"), "seed": 2}
    writer = spawn([sys.executable, "-m", "streamrec.bench.live_writes", json.dumps(spec)],
                   log_path=work / "writer.log", env=env)
    # every phase measures under writes: wait for the writer's first count
    deadline = time.monotonic() + 60
    while events_written(spec["count_path"]) is None:
        if writer.poll() is not None or time.monotonic() > deadline:
            writer.kill()
            log = (work / "writer.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"the live writer did not start: {log}")
        time.sleep(0.05)
    return writer


@stops_on_sigterm
def run(args: argparse.Namespace) -> int:
    """Start Redis, the API and the bare app, load data, measure both, report."""
    from core.net import free_port
    from core.settings import Settings, env_for_child
    from streamrec.stack.servers import spawn, start_redis, stop_pid

    work = Path(tempfile.mkdtemp(prefix="streamrec-bench-serve-"))
    started: list[Any] = []
    redis_srv = None
    try:
        redis_url = args.redis_url
        if not redis_url:
            redis_srv = start_redis(work)
            redis_url = f"redis://{redis_srv.address}/0"
        print(f"loading {args.users} users x 100 items, {args.items} catalog items ...",
              file=sys.stderr)
        load_data(redis_url, args.users, args.items)
        if args.experiment:
            define_experiment(redis_url, args.users)
        api_port, bare_port = free_port(), free_port()
        settings = Settings(
            redis_url=redis_url, kafka_bootstrap=f"127.0.0.1:{free_port()}",
            api_port=api_port, read_keys=BENCH_KEY, admin_keys=ADMIN_KEY,
            rate_limit_read_per_s=1_000_000, log_level="WARNING", state_dir=work / "state")
        env = env_for_child(settings)
        api = spawn([sys.executable, "-m", "streamrec.cli", "api"],
                    log_path=work / "api.log", env=env)
        bare = spawn([sys.executable, "-m", "streamrec.bench.serve", "--bare",
                      str(bare_port)], log_path=work / "bare.log", env=env)
        started += [api, bare]
        redis_pid = {"redis": redis_srv.pid} if redis_srv is not None else {}
        _wait_http(api_port)
        _wait_http(bare_port)
        pins = _pin_plan(args.pin)
        if pins is not None:
            os.sched_setaffinity(api.pid, {pins["server"]})
            os.sched_setaffinity(bare.pid, {pins["server"]})
            if redis_srv is not None:
                os.sched_setaffinity(redis_srv.pid, {pins["redis"]})
        results = _header(args, pins)
        loadgen_cpu = pins["loadgen"] if pins is not None else None
        writer = _start_writer(args, redis_url, work, env)
        if writer is not None:
            started.append(writer)
        count = str(work / "writer.count") if writer is not None else None
        watch = {"writer": writer.pid} if writer is not None else {}
        began = time.monotonic()
        for run_no in range(1, args.repeat + 1):
            print(f"run {run_no}/{args.repeat}: measuring streamrec ...", file=sys.stderr)
            api_result = _loadgen(api_port, args, {"server": api.pid, **redis_pid, **watch},
                                  loadgen_cpu, ADMIN_KEY, count)
            print(f"run {run_no}/{args.repeat}: measuring the bare endpoint ...",
                  file=sys.stderr)
            bare_result = _loadgen(bare_port, args, {"server": bare.pid, **watch},
                                   loadgen_cpu, writer_count=count)
            results["runs"].append({
                "api": api_result, "bare": bare_result,
                "throughput_ratio": round(api_result["max"]["achieved_rps"]
                                          / bare_result["max"]["achieved_rps"], 3)})
        results["live_writes"] = {"rate": args.live_writes, "achieved_eps": round(
            (events_written(count) or 0) / (time.monotonic() - began), 1)} if count else None
        # The run with the median throughput ratio is the headline (all runs are kept).
        by_ratio = sorted(results["runs"], key=lambda r: r["throughput_ratio"])
        results.update(by_ratio[(len(by_ratio) - 1) // 2])
        last = finish(results, args.out)
        for run_no, one in enumerate(results["runs"], 1):
            if args.repeat > 1:
                print(f"\nRun {run_no}:\n")
            print(markdown({**results, **one}, caveat=args.repeat == 1))
        if args.repeat > 1:
            print("\n" + summary(results))
        print(f"\n{last}")
        return 0
    finally:
        for proc in started:
            stop_pid(proc.pid, timeout=5)
        if redis_srv is not None:
            redis_srv.stop()


def main() -> None:
    """Entry of the helper processes (``--bare PORT``, ``--loadgen SPEC``)."""
    if sys.argv[1] == "--bare":
        run_bare(int(sys.argv[2]))
    elif sys.argv[1] == "--loadgen":
        print(json.dumps(run_loadgen(json.loads(sys.argv[2]))))


if __name__ == "__main__":
    main()
