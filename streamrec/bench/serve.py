"""``streamrec bench serve``: serving latency and throughput, side by side with a bare
FastAPI endpoint, in one run.

What runs (all local processes on this machine):

* a redis-server (our own, or ``--redis-url``) loaded with realistic lists: ``--users``
  personal lists of 100 items, a catalog of ``--items`` items (5 % out of stock), a few
  purchases per user, popular/trending sets, co-occurrence for sessions;
* the streamrec API (``streamrec api``, uvloop + httptools, auth on, rate limits far
  above the offered load so they are checked but never hit), and
* a *bare* FastAPI app in its own uvicorn process with the same server settings,
  returning a constant body of the same shape (10 items): the ceiling of what any
  FastAPI endpoint does on this machine;
* the load generator (:mod:`streamrec.bench.loadgen`), a separate process
  (``--loadgen``) speaking raw HTTP/1.1 over keep-alive connections with asyncio (no
  client library in the measured path).

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
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from streamrec.bench.loadgen import MIXES, N, run_loadgen
from streamrec.bench.options import finish, number, stops_on_sigterm, whole
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


# --------------------------------------------------------------------------- data


def load_data(redis_url: str, users: int, items: int, seed: int = 1) -> None:
    """Realistic prepared lists, catalog and stock, written as the worker writes them
    (personal lists in the blended format of ``stream.processor``: ``[id, score, reason]``)."""
    import orjson
    import redis

    from core.merch_keys import COLUMNS_VERSION
    from core.redis_keys import RedisKeys
    from recommender.refresh import REASONS
    from stream.catalog_columns import serve_row
    from stream.redis_writer import dumps_list

    k = RedisKeys()
    rnd = random.Random(seed)
    reasons = [REASONS[s] for s in ("personal", "session", "similar", "popular")]
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    pipe = client.pipeline(transaction=False)
    # Popularity follows a power law, like real shops.
    weights = [1.0 / (i + 1) ** 0.8 for i in range(items)]
    pipe.zadd(k.popular, {f"sku-{i}": round(w * 10000, 3) for i, w in enumerate(weights)})
    pipe.zadd(k.trending, {f"sku-{i}": rnd.random() * 100 for i in range(0, items, 3)})
    pipe.set(k.trending_epoch, repr(float(int(time.time()))))
    pipe.set(k.model_current, "vbench")
    pipe.set(k.columns_ready, COLUMNS_VERSION)
    for i in range(items):
        in_stock = rnd.random() > 0.05
        fields: dict[Any, Any] = {"name": f"Item {i}", "price": repr(round(rnd.uniform(1, 200), 2)),
                                  "currency": "EUR", "category": f"c{i % 40}"}
        pipe.hset(k.item_meta(f"sku-{i}"), mapping={**fields, "in_stock": str(int(in_stock)),
                  "deleted": "0", "properties": "{}", "updated_at": repr(time.time())})
        # the catalog columns (stream.catalog_columns), as the worker writes them
        pipe.hset(k.item_categories, f"sku-{i}", f"c{i % 40}")
        pipe.sadd(k.category_items(f"c{i % 40}"), f"sku-{i}")
        pipe.hset(k.item_prices, f"sku-{i}", fields["price"])
        pipe.hset(k.item_rows, f"sku-{i}", serve_row(in_stock=in_stock, deleted=False, **fields))
        if not in_stock:
            pipe.sadd(k.unavailable, f"sku-{i}")
        if i % 500 == 499:
            pipe.execute()
    pipe.execute()
    for u in range(users):
        chosen = rnd.choices(range(items), weights=weights, k=140)
        seen: list[int] = []
        for c in chosen:
            if c not in seen:
                seen.append(c)
        ids = [f"sku-{c}" for c in seen[:100]]
        # The worker's blended list: [id, score, reason], mostly the personal source.
        pipe.set(k.user_recs(f"u{u}"), dumps_list(
            "vbench", ids, [1.0 - j / 200 for j in range(len(ids))], ts=time.time(),
            reasons=rnd.choices(reasons, weights=[0.7, 0.1, 0.1, 0.1], k=len(ids))))
        pipe.zadd(k.user_bought(f"u{u}"),
                  {f"sku-{rnd.randrange(items)}": float(j) for j in range(3)})
        pipe.set(k.user_recent(f"u{u}"), orjson.dumps(ids[:5]))
        if u % 500 == 499:
            pipe.execute()
    pipe.execute()
    client.close()


#: ``--experiment``: a typical holdout experiment over every context.
BENCH_VARIANTS: list[dict[str, Any]] = [
    {"name": "control", "weight": 0.1, "serve": "holdout"},
    {"name": "treatment", "weight": 0.9, "serve": "personalized"}]


def define_experiment(redis_url: str, users: int) -> None:
    """A running experiment (:data:`BENCH_VARIANTS`) with every bench user already
    exposed (confirmed assignments, as after their first answer; the bench has no Kafka
    to take exposure records)."""
    import time as _time

    import orjson
    import redis

    from core.redis_keys import RedisKeys
    from recommender.experiments import assign_variant

    k = RedisKeys()
    names = [v["name"] for v in BENCH_VARIANTS]
    weights = [v["weight"] for v in BENCH_VARIANTS]
    doc = {"experiment_id": "bench", "variants": BENCH_VARIANTS, "status": "running",
           "contexts": None,
           "created_at": _time.time(), "started_at": _time.time(), "stopped_at": None,
           "run": "bench"}
    client = redis.Redis.from_url(redis_url)
    client.hset(k.experiments, "bench", orjson.dumps(doc))
    client.hset(k.experiment_assign("bench"), mapping={
        f"u{u}": assign_variant("bench", f"u{u}", names, weights) for u in range(users)})
    client.close()


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
             cpu: int | None, admin_key: str | None = None) -> dict[str, Any]:
    spec = {"host": "127.0.0.1", "port": port, "users": args.users, "key": BENCH_KEY,
            "rates": args.rates, "duration": args.duration, "warmup": args.warmup,
            "watch": watch, "cpu": cpu, "mix": args.mix, "admin_key": admin_key}
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
    parser.add_argument("--out", type=Path, default=Path("bench-results/serve.json"),
                        help="the JSON result (default: bench-results/serve.json)")


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
        from api.server import server_options

        pins = _pin_plan(args.pin)
        if pins is not None:
            os.sched_setaffinity(api.pid, {pins["server"]})
            os.sched_setaffinity(bare.pid, {pins["server"]})
            if redis_srv is not None:
                os.sched_setaffinity(redis_srv.pid, {pins["redis"]})
        results: dict[str, Any] = {"rates": args.rates, "duration_s": args.duration,
                                   "mix": args.mix,
                                   "experiment": bool(args.experiment),
                                   "cpus": os.cpu_count(), "users": args.users,
                                   "items": args.items, "n": N, "pinned_cpus": pins,
                                   "server_options": {k: getattr(v, "__qualname__", v) for k, v
                                                      in server_options().items()}, "runs": []}
        loadgen_cpu = pins["loadgen"] if pins is not None else None
        for run_no in range(1, args.repeat + 1):
            print(f"run {run_no}/{args.repeat}: measuring streamrec ...", file=sys.stderr)
            api_result = _loadgen(api_port, args, {"server": api.pid, **redis_pid},
                                  loadgen_cpu, ADMIN_KEY)
            print(f"run {run_no}/{args.repeat}: measuring the bare endpoint ...",
                  file=sys.stderr)
            bare_result = _loadgen(bare_port, args, {"server": bare.pid}, loadgen_cpu)
            results["runs"].append({
                "api": api_result, "bare": bare_result,
                "throughput_ratio": round(api_result["max"]["achieved_rps"]
                                          / bare_result["max"]["achieved_rps"], 3)})
        # The run with the median throughput ratio is the headline (all runs are kept).
        by_ratio = sorted(results["runs"], key=lambda r: r["throughput_ratio"])
        results.update(by_ratio[(len(by_ratio) - 1) // 2])
        last = finish(results, args.out)
        for run_no, one in enumerate(results["runs"], 1):
            if args.repeat > 1:
                print(f"\nRun {run_no}:\n")
            print(markdown({**results, **one}))
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
