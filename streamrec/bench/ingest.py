"""``streamrec bench ingest``: sustained end-to-end event rate and freshness under load.

Against a running stack (``streamrec up``; its addresses come from the state file), in
one run:

1. **end to end** — post N events (the Taobao window of ``../shared/data`` when present,
   synthetic shoppers otherwise; fresh event ids and current timestamps so nothing is
   deduplicated) through ``POST /v1/events`` with bounded concurrency, and time from the
   first request to the moment the workers' ``processed`` counter covers all N (accepted
   → lists rewritten). The API accept rate is reported too.
2. **raw aiokafka consumer** — read exactly the offsets phase 1 wrote, ``json.loads``
   every message and count its events: the ceiling of the broker + client.
3. **bare Faust agent** — a separate process with its own group, started at the same
   offsets, whose agent only decodes and counts: Faust's own per-message ceiling
   (phases 2 and 3: :mod:`streamrec.bench.baselines`).
4. **freshness** — hold a fixed rate (2,000 events/s by default) for a while and report
   p50/p99 of the workers' freshness histogram (API arrival → list rewritten) over that
   window (interpolated inside Prometheus buckets).

``--workers K`` runs K workers in all: extra ones next to the stack's for the run when it
has fewer (:func:`extra_workers`).
Results go to JSON (``--out``) and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import itertools
import os
import random
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from core.ops_records import FRESHNESS_BUCKETS_MS
from core.settings import Settings
from streamrec.bench.baselines import bare_faust, raw_consume
from streamrec.bench.freshness import OutsideProbe
from streamrec.bench.ingest_options import configure_parser
from streamrec.bench.options import finish, held_count, stops_on_sigterm
from streamrec.client.retry import RetryPolicy

__all__ = ["configure_parser", "measure", "run"]

TYPES = {"pv": "view", "cart": "add_to_cart", "fav": "add_to_cart", "buy": "purchase"}


def bench_events(n: int, tag: str, data: Path | None) -> tuple[list[dict[str, Any]], str]:
    """N tracking events (dataset order), ids unique to this run; and their source."""
    rows: list[tuple[str, str, str]] = []
    source = "synthetic"
    if data is not None and data.exists():
        with open(data, newline="") as fh:
            for row in csv.reader(fh):
                if len(row) == 5 and row[3] in TYPES:
                    rows.append((row[0], row[1], TYPES[row[3]]))
        source = f"taobao ({data.name})"
    if not rows:
        rng = random.Random(7)
        rows = [(str(rng.randrange(60_000)), str(int(rng.paretovariate(1.2) * 100) % 80_000),
                 rng.choice(["view"] * 16 + ["add_to_cart", "purchase"])) for _ in range(n)]
    out = []
    for i in range(n):
        user, item, etype = rows[i % len(rows)]
        out.append({"event_id": f"bench-{tag}-{i}", "type": etype, "user_id": user,
                    "item_id": item})
    return out, source


#: The client's retry rule (streamrec.client.retry), with short waits: a benchmark posts
#: at full speed and a refused batch should come back quickly.
POST_RETRY = RetryPolicy(max_retries=30, base_delay_s=0.05, max_delay_s=2.0,
                         max_retry_after_s=2.0)


async def post_all(base: str, events: list[dict[str, Any]], *, batch: int, concurrency: int,
                   key: str, rate: float | None = None) -> float:
    """POST events in batches; at ``rate`` events/s when given. Returns elapsed seconds."""
    import httpx

    headers = {"Content-Type": "application/json"}
    if key:
        headers["X-API-Key"] = key
    chunks = [events[i:i + batch] for i in range(0, len(events), batch)]
    sem = asyncio.Semaphore(concurrency)
    started = time.perf_counter()

    async with httpx.AsyncClient(base_url=base, timeout=30.0, trust_env=False,
                                 limits=httpx.Limits(max_connections=concurrency)) as client:
        async def send(i: int, chunk: list[dict[str, Any]]) -> None:
            if rate:
                due = i * batch / rate - (time.perf_counter() - started)
                if due > 0:
                    await asyncio.sleep(due)
            async with sem:
                body = orjson.dumps({"events": chunk})
                for attempt in itertools.count():
                    resp = await client.post("/v1/events", content=body, headers=headers)
                    if resp.status_code == 202:
                        return
                    wait = POST_RETRY.next_wait(attempt, resp.status_code,
                                                resp.headers.get("Retry-After"))
                    if wait is None:
                        raise RuntimeError(f"API {resp.status_code}: {resp.text[:200]}")
                    await asyncio.sleep(wait)

        await asyncio.gather(*(send(i, c) for i, c in enumerate(chunks)))
    return time.perf_counter() - started


def processed(client: Any) -> int:
    """The workers' processed counter."""
    from core.redis_keys import RedisKeys

    return int(client.hget(RedisKeys().stats, "processed") or 0)


def wait_processed(client: Any, target: int, timeout_s: float) -> float:
    """Block until ``processed >= target``; returns the perf_counter time it happened."""
    deadline = time.monotonic() + timeout_s
    while processed(client) < target:
        if time.monotonic() > deadline:
            raise TimeoutError(f"workers processed {processed(client)} of {target}")
        time.sleep(0.02)
    return time.perf_counter()


def scrape_freshness(ports: list[int], metric: str = "streamrec_freshness_seconds"
                     ) -> dict[float, float]:
    """Summed cumulative buckets (le → count) of all workers' freshness histogram (or
    ``metric``'s, e.g. the re-fold delay's)."""
    import httpx

    total: dict[float, float] = {}
    for port in ports:
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=3).text
        except httpx.HTTPError:
            continue
        for line in text.splitlines():
            if line.startswith(f"{metric}_bucket"):
                le = line.split('le="')[1].split('"')[0]
                bound = float("inf") if le == "+Inf" else float(le)
                total[bound] = total.get(bound, 0.0) + float(line.rsplit(" ", 1)[1])
    return total


def histogram_quantile(q: float, before: dict[float, float], after: dict[float, float]
                       ) -> float | None:
    """Quantile (seconds) of the observations between two scrapes, linear in a bucket."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return None
    rank = q * counts[-1]
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if bound == float("inf"):
                return prev_bound
            span = count - prev_count
            frac = (rank - prev_count) / span if span > 0 else 1.0
            return prev_bound + (bound - prev_bound) * frac
        prev_bound, prev_count = bound, count
    return None


def worker_ports(redis_url: str) -> list[int]:
    """Metrics ports of live workers (from their heartbeats)."""
    from streamrec.stack.embedded import worker_heartbeats

    now = time.time()
    return [int(b["metrics_port"]) for b in worker_heartbeats(redis_url).values()
            if b.get("metrics_port", "0") not in ("", "0")
            and now - float(b.get("heartbeat_at") or 0) < 6]


def extra_workers(settings: Settings, wanted: int | None, running: int, log_dir: Path
                  ) -> list[Any]:
    """The worker processes started for the run so that ``wanted`` (``--workers``; None:
    the stack's own) run in all beside the ``running`` ones; none when as many or more
    run (the bench never stops a stack's worker for this)."""
    more = (wanted or 0) - running
    return _start_extra_workers(settings, more, log_dir) if more > 0 else []


def _start_extra_workers(settings: Settings, n: int, log_dir: Path) -> list[Any]:
    """Start ``n`` extra worker processes and wait for their ready heartbeats."""
    import redis

    from core.settings import env_for_child
    from streamrec.stack.servers import spawn, stop_pid

    procs = [spawn([sys.executable, "-m", "streamrec.cli", "worker"],
                   log_path=log_dir / f"bench-worker-{i}.log", env=env_for_child(settings))
             for i in range(n)]
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    from core.redis_keys import RedisKeys

    deadline = time.monotonic() + 90
    pending = {str(p.pid) for p in procs}
    while pending and time.monotonic() < deadline:
        for key in client.scan_iter(RedisKeys().worker_pattern):
            beat = client.hgetall(key)
            if beat.get("ready") == "1":
                pending.discard(beat.get("pid", ""))
        time.sleep(0.2)
    client.close()
    if pending:
        for proc in procs:  # never leave a half-started worker in the group
            stop_pid(proc.pid, timeout=10)
        raise RuntimeError(f"extra workers not ready: {pending}")
    time.sleep(settings.session_timeout_s)  # let the group settle on the new split
    return procs


def markdown(report: dict[str, Any]) -> str:
    """The table for docs/benchmarks.md."""
    e2e, raw, bare, fresh = (report["end_to_end"], report["raw_aiokafka"],
                             report["bare_faust"], report["freshness"])
    rows = [
        ("end to end: API accepted → lists rewritten", f"{e2e['events_per_s']:,}",
         f"{e2e['events']:,} events in {e2e['messages']:,} messages; load average "
         f"{e2e['load_average_1m'][0]} → {e2e['load_average_1m'][1]}"),
        ("API accept rate (same run)", f"{e2e['accept_events_per_s']:,}", ""),
        ("raw aiokafka consumer + json.loads (same topic range)",
         f"{raw.get('events_per_s', 0):,}", f"{raw.get('messages_per_s', 0):,} msg/s"),
        ("bare Faust agent (same topic range)", f"{bare.get('events_per_s', 0):,}",
         f"{bare.get('messages_per_s', 0):,} msg/s"),
        (f"freshness at {fresh['rate']:,.0f} events/s: p50 / p99",
         f"{fresh.get('p50_ms')} ms / {fresh.get('p99_ms')} ms", ""),
    ]
    out = ["| measurement | events/s | note |", "|---|---:|---|"]
    out += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(out)


@stops_on_sigterm
def run(args: argparse.Namespace) -> int:
    """All four phases; JSON to ``--out`` and a Markdown table to stdout. With
    ``--broker`` on fresh embedded stacks of each broker (:mod:`streamrec.bench.brokers`)."""
    if args.broker:
        from streamrec.bench.brokers import run_on_brokers

        return run_on_brokers(args)
    from core.net import local_http_url
    from core.settings import get_settings
    from streamrec.stack.embedded import load_state

    settings = get_settings()
    state = load_state(settings)
    base = args.api_url or (state.api_url if state and state.api_url
                            else local_http_url(settings.api_host, settings.api_port))
    log_dir = Path(state.log_dir) if state and state.log_dir else Path("bench-results")
    if args.burst:
        if state is None:
            print("--burst needs the embedded stack (`streamrec up`) or --broker")
            return 2
        from streamrec.bench.burst import measure_burst

        report = measure_burst(settings, args, base, state)
    else:
        report = measure(settings, args, base, log_dir)
    from streamrec.bench.burst_report import burst_table

    name = "this stack"
    if state is not None and "kafka" in state.processes:  # which broker it ran on
        rec = state.processes["kafka"]
        report["broker"] = {"kind": rec.broker_kind, "version": rec.version}
        kind = {"tansu": "Tansu", "apache-kafka": "Apache Kafka"}.get(rec.broker_kind)
        name = f"{kind or rec.broker_kind} {rec.version or ''}".strip()
    last = finish(report, args.out)
    print(burst_table({"stack": [report]}, {"stack": name}) if args.burst
          else markdown(report))
    print(last)
    return 0


def hold_freshness(settings: Settings, args: argparse.Namespace, base: str, key: str,
                   held: list[dict[str, Any]],
                   cpu: Callable[[], dict[str, float]] | None = None,
                   outside: OutsideProbe | None = None) -> dict[str, Any]:
    """Post ``held`` at ``args.rate`` events/s and report p50/p99 of the workers'
    freshness histogram (API arrival → list first changed) over that window, and of
    their re-fold delay (arrival → list re-folded: ``refold_*``, read once no list
    waits). ``cpu``: reads CPU seconds per process (``burst.cpu_seconds``); then the
    report has CPU µs per held event while the events arrive and are processed
    (``cpu_us_per_event``) and for the re-folds that waited past that
    (``refold_cpu_us_per_event``): the headroom the held rate leaves on the box.
    ``outside``: probes through the API while the events arrive (``outside``: its
    :meth:`~streamrec.bench.freshness.OutsideProbe.summary`)."""
    import redis

    from core.redis_keys import RedisKeys
    from streamrec.bench.burst import per_event_us

    refold = "streamrec_refold_delay_seconds"
    client = redis.Redis.from_url(settings.redis_url)
    try:
        ports = worker_ports(settings.redis_url)
        before, before_r = scrape_freshness(ports), scrape_freshness(ports, refold)
        p1 = processed(client)
        cpu0 = cpu() if cpu is not None else {}
        with outside if outside is not None else contextlib.nullcontext():
            asyncio.run(post_all(base, held, batch=max(1, min(args.batch, int(args.rate / 20))),
                                 concurrency=args.concurrency, key=key, rate=args.rate))
        wait_processed(client, p1 + len(held), timeout_s=300)
        cpu1 = cpu() if cpu is not None else {}
        time.sleep(0.5)
        after = scrape_freshness(ports)
        deadline = time.monotonic() + 120
        while client.zcard(RedisKeys().relist_pending) and time.monotonic() < deadline:
            time.sleep(0.2)
        cpu2 = cpu() if cpu is not None else {}
        time.sleep(0.5)
        after_r = scrape_freshness(ports, refold)
    finally:
        client.close()
    out: dict[str, Any] = {"rate": args.rate, "seconds": args.hold, "events": len(held)}
    if cpu is not None:
        out |= {"cpu_us_per_event": per_event_us(cpu0, cpu1, len(held)),
                "refold_cpu_us_per_event": per_event_us(cpu1, cpu2, len(held))}
    for name, (b, a) in (("", (before, after)), ("refold_", (before_r, after_r))):
        p50, p99 = (histogram_quantile(q, b, a) for q in (0.5, 0.99))
        out |= {f"{name}samples": round(a.get(float("inf"), 0) - b.get(float("inf"), 0)),
                f"{name}p50_ms": None if p50 is None else round(p50 * 1000, 1),
                f"{name}p99_ms": None if p99 is None else round(p99 * 1000, 1)}
        if p99 is not None and p99 * 1000 >= FRESHNESS_BUCKETS_MS[-1]:
            # In the bucket above the top bound: the histogram says "at least".
            out[f"{name}p99_at_least"] = True
    if outside is not None:
        out["outside"] = outside.summary()
    return out


def measure(settings: Settings, args: argparse.Namespace, base: str,
            log_dir: Path) -> dict[str, Any]:
    """The four phases against the stack at ``base`` (API) and ``settings`` (Kafka,
    Redis); the report as a dict."""
    import redis

    from core.kafka_tools import high_watermarks
    from core.stack_defaults import first_key
    from streamrec.stack.servers import stop_pid

    key = first_key(settings.tracking_keys)
    log_dir.mkdir(parents=True, exist_ok=True)
    client = redis.Redis.from_url(settings.redis_url)
    tag = uuid.uuid4().hex[:6]
    events, source = bench_events(args.events, tag, args.data)
    running = len(worker_ports(settings.redis_url))
    extra = extra_workers(settings, args.workers, running, log_dir)
    try:
        # 1. end to end
        starts = high_watermarks(settings, settings.topic_events)
        p0 = processed(client)
        load_before = round(os.getloadavg()[0], 2)
        print(f"phase 1: {len(events)} {source} events through {base} ...", flush=True)
        t0 = time.perf_counter()
        accept_s = asyncio.run(post_all(base, events, batch=args.batch,
                                        concurrency=args.concurrency, key=key))
        done = wait_processed(client, p0 + len(events), timeout_s=600)
        e2e_s = done - t0
        ends = high_watermarks(settings, settings.topic_events)
        messages = sum(ends[p] - starts.get(p, 0) for p in ends)
        end_to_end = {"events": len(events), "messages": messages,
                      "load_average_1m": [load_before, round(os.getloadavg()[0], 2)],
                      "events_per_message": round(len(events) / max(messages, 1), 2),
                      "seconds": round(e2e_s, 2),
                      "events_per_s": round(len(events) / e2e_s),
                      "accept_seconds": round(accept_s, 2),
                      "accept_events_per_s": round(len(events) / accept_s)}
        print(f"  {end_to_end}", flush=True)
        # 2. raw consumer, 3. bare Faust, over exactly that range
        print("phase 2: raw aiokafka consumer ...", flush=True)
        raw = asyncio.run(raw_consume(settings, starts, ends))
        print(f"  {raw}\nphase 3: bare Faust agent ...", flush=True)
        bare = bare_faust(settings, starts, ends, log_dir / f"bench-faust-{tag}.json",
                          log_dir / "bench-faust.log")
        print(f"  {bare}", flush=True)
        # 4. freshness at a held rate
        print(f"phase 4: {args.rate:g} events/s for {args.hold:g}s ...", flush=True)
        held, _ = bench_events(held_count(args.rate, args.hold), tag + "h", args.data)
        freshness = hold_freshness(settings, args, base, key, held)
        print(f"  {freshness}", flush=True)
    finally:
        for proc in extra:
            stop_pid(proc.pid, timeout=10)
        client.close()
    return {"source": source, "workers": running + len(extra), "cpus": os.cpu_count(),
            "end_to_end": end_to_end, "raw_aiokafka": raw, "bare_faust": bare,
            "freshness": freshness}
