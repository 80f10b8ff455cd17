"""``streamrec bench ingest --burst``: the burst of issue 14, measured from outside.

A new user's case: 100,000 events of 20,000 shoppers over 20,000 items posted through
the API in 500-event requests from 4 threads, on the stack as ``up`` starts it (retrains
on). Phases, in order, on one stack:

1. **burst** — events ÷ time from the first request until ``streamrec status --json``
   shows lag 0 (the same computation, :class:`core.pipeline_status.PipelineProbe`, polled
   in process), and until the lists that waited (coalesced) are written too; the API
   accept rate; CPU µs per event of the API, the broker, Redis, the worker and the
   retrain processes it started (``/proc``); retrains during the burst.
2. **freshness held** — once a model is live (the bench trains one when the burst's
   scheduled retrain has not, :func:`ensure_model`) and the stack is quiet (no retrain
   running, no refresh sweep, no waiting list: the steady state), ``--rate`` events/s
   (2,000) for ``--hold`` s: p50/p99 of the workers' freshness histogram
   (:func:`streamrec.bench.ingest.hold_freshness`), and meanwhile two probes a second
   from outside (:func:`streamrec.bench.freshness.held_probe`).
3. **lone event** — ``--lone-samples`` times: quiet again, ``--lone-idle`` s of no
   traffic, then one event for a shopper of the burst; time from the 202 to a changed
   list through the API (polled every 10 ms, a timeout after ``--lone-timeout`` s,
   :func:`streamrec.bench.freshness.personal_freshness`).
4. **infrastructure ceiling** — the stack's worker stopped, a no-op worker
   (:mod:`streamrec.bench.noop_worker`: decode, one Redis key per event) in its own
   group, the same burst again: events/s and CPU per event by process; then the stack's
   worker is started again.
5. **retrain** — 1,000,000 interactions on a topic of their own, the retrain's stages to
   a live version (:mod:`streamrec.bench.train_time`).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import threading
import time
import uuid
import zlib
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import orjson

from core.settings import Settings
from streamrec.bench.quiet import quiet, wait_quiet, wait_until

TICK = os.sysconf("SC_CLK_TCK")


def burst_events(n: int, shoppers: int, items: int, tag: str) -> list[dict[str, Any]]:
    """``n`` events, shoppers uniform, items half popular-heavy (as the retrain bench)."""
    from streamrec.bench.train_time import interactions

    # zlib.crc32, not hash(): str hashes differ per process; one tag, the same events
    users, item, kind = interactions(n, shoppers, items, seed=zlib.crc32(tag.encode()) & 0xFFFF)
    types = ("view", "add_to_cart", "purchase")
    return [{"event_id": f"burst-{tag}-{i}", "type": types[kind[i]],
             "user_id": f"s{users[i]}", "item_id": f"i{item[i]}"} for i in range(n)]


def post_threads(base: str, events: list[dict[str, Any]], *, batch: int, threads: int,
                 key: str) -> float:
    """POST ``events`` in ``batch``-event requests from ``threads`` threads (each its own
    keep-alive connection), retrying refusals by the ingest bench's rule
    (:data:`streamrec.bench.ingest.POST_RETRY`); seconds until all were accepted."""
    from streamrec.bench.ingest import POST_RETRY

    chunks = [orjson.dumps({"events": events[i:i + batch]})
              for i in range(0, len(events), batch)]
    headers = {"Content-Type": "application/json", **({"X-API-Key": key} if key else {})}
    errors: list[str] = []

    def work(k: int) -> None:
        with httpx.Client(base_url=base, timeout=30.0, trust_env=False) as client:
            for body in chunks[k::threads]:
                for attempt in itertools.count():
                    resp = client.post("/v1/events", content=body, headers=headers)
                    if resp.status_code == 202:
                        break
                    wait = POST_RETRY.next_wait(attempt, resp.status_code,
                                                resp.headers.get("Retry-After"))
                    if wait is None:
                        errors.append(f"API {resp.status_code}: {resp.text[:200]}")
                        return
                    time.sleep(wait)

    started = time.perf_counter()
    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    if errors:
        raise RuntimeError(errors[0])
    return time.perf_counter() - started


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out += [int(c) for c in fh.read().split()]
    except OSError:
        pass
    return out


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """User + system CPU seconds per named process; ``retrain`` is the worker's child
    processes (its retrains): those it waited for and those still running."""
    out: dict[str, float] = {}
    for name, pid in pids.items():
        fields = _stat(pid)
        if fields is None:
            continue
        out[name] = (int(fields[11]) + int(fields[12])) / TICK
        if name.startswith("worker"):
            running = [f for f in map(_stat, _children(pid)) if f is not None]
            out["retrain"] = out.get("retrain", 0.0) + (
                int(fields[13]) + int(fields[14])
                + sum(int(f[11]) + int(f[12]) for f in running)) / TICK
            out["workers"] = out.get("workers", 0.0) + out[name]
    return out


def own_pids(state: Any) -> list[int]:
    """The pids of the workers of the stack ``state`` describes (not the bench's), the
    first recorded first."""
    from streamrec.stack.records import members

    return [rec.pid for rec in members(state.processes, "worker")]


def per_event_us(before: dict[str, float], after: dict[str, float], events: int
                 ) -> dict[str, int]:
    """CPU µs per event of each process between two :func:`cpu_seconds` readings."""
    return {name: round((after[name] - before.get(name, 0.0)) / events * 1e6)
            for name in after}


def lag_zero(settings: Settings) -> Any:
    """A predicate: the group of ``settings.app_id`` has lag 0 on the events topic, as
    ``streamrec status --json`` computes it."""
    from core.pipeline_status import PipelineProbe

    probe = PipelineProbe(settings)

    def check() -> bool:
        try:
            status = probe.kafka_status()
        except Exception:  # noqa: BLE001 - a slow answer: ask again
            return False
        topic = status["topics"].get(settings.topic_events) or {}
        return bool(topic.get("total")) and status["lag"] == 0

    check.probe = probe  # type: ignore[attr-defined]
    return check


def phase_burst(settings: Settings, args: argparse.Namespace, base: str,
                pids: dict[str, int], key: str) -> dict[str, Any]:
    """Phase 1 (see the module notes)."""
    import redis

    from core.redis_keys import RedisKeys

    keys = RedisKeys()
    client = redis.Redis.from_url(settings.redis_url)
    events = burst_events(args.events, args.shoppers, args.items, uuid.uuid4().hex[:6])
    p0 = int(client.hget(keys.stats, "processed") or 0)
    models0 = client.llen(keys.model_history)
    check = lag_zero(settings)
    load = [round(os.getloadavg()[0], 2)]
    cpu0 = cpu_seconds(pids)
    t0 = time.perf_counter()
    accept_s = post_threads(base, events, batch=args.batch, threads=args.threads, key=key)
    lag0 = wait_until(lambda: int(client.hget(keys.stats, "processed") or 0)
                      >= p0 + len(events) and check(), 900) - t0
    lists = wait_until(lambda: not client.zcard(keys.relist_pending), 300) - t0
    cpu1 = cpu_seconds(pids)
    load.append(round(os.getloadavg()[0], 2))
    history = [orjson.loads(h) for h in client.lrange(keys.model_history, 0, -1)]
    retrains = client.llen(keys.model_history) - models0
    check.probe.close()
    client.close()
    return {"events": len(events), "shoppers": args.shoppers, "items": args.items,
            "threads": args.threads, "accept_seconds": round(accept_s, 2),
            "accept_events_per_s": round(len(events) / accept_s),
            "lag0_seconds": round(lag0, 2), "events_per_s": round(len(events) / lag0),
            "lists_current_seconds": round(max(lists, lag0), 2),
            "cpu_us_per_event": per_event_us(cpu0, cpu1, len(events)),
            "retrains": retrains,
            "retrain_seconds": [h.get("seconds") for h in history[:max(retrains, 0)]],
            "load_average_1m": load}


def ensure_model(settings: Settings) -> float:
    """Make sure the workers serve a model before the held rate is measured (the phase is
    "one worker, model live"): the burst's own scheduled retrain may not have started
    yet, and one starting mid-phase measured part of it without a model. Trains one
    (the worker's retrain, every core) when the workers have none; seconds spent."""
    from stream.retrain import RetrainBusy, train_and_publish
    from streamrec.bench.train_time import wait_for_train_lock
    from streamrec.stack.probes import worker_heartbeats

    started = time.perf_counter()

    def live() -> bool:
        beats = worker_heartbeats(settings.redis_url).values()
        return bool(beats) and all(b.get("model_version") for b in beats)

    if not live():
        wait_for_train_lock(settings)  # a scheduled retrain already running: let it finish
        if not live():
            try:
                # a burst of fewer events than the worker's minimum still gets its model
                train_and_publish(settings.model_copy(update={"retrain_min_events": 1}),
                                  wait_live_s=60, threads=0)
            except RetrainBusy:
                pass
        wait_until(live, 120, interval=0.5)
    return round(time.perf_counter() - started, 1)


def phase_lone(base: str, args: argparse.Namespace, users: list[str], redis_url: str
               ) -> dict[str, Any]:
    """Phase 3: one event after ``--lone-idle`` s of quiet (:func:`quiet` before and after
    them: a scheduled retrain may start here) → that shopper's changed list."""
    from core.settings import get_settings
    from core.stack_defaults import first_key
    from streamrec.bench.freshness import _ids, personal_freshness, summarize

    waited = wait_quiet(redis_url)
    settings = get_settings()
    read_key, tracking_key = first_key(settings.read_keys), first_key(settings.tracking_keys)
    still = partial(quiet, redis_url)
    with httpx.Client(base_url=base, timeout=5.0, trust_env=False) as client:
        items = _ids(client.get("/v1/popular?n=100",
                                headers={"X-API-Key": read_key} if read_key else {}))
        samples = personal_freshness(client, users=users, items=items, read_key=read_key,
                                     tracking_key=tracking_key, timeout_s=args.lone_timeout,
                                     idle_s=args.lone_idle, quiet=still,
                                     settle=partial(wait_until, still, 900))
    return {"idle_s": args.lone_idle, "waited_for_quiet_s": waited, **summarize(samples)}


def phase_ceiling(settings: Settings, args: argparse.Namespace, base: str,
                  state: Any, key: str) -> dict[str, Any]:
    """Phase 4: the stack's workers stopped, the no-op worker, the burst again; then the
    stack's workers started again."""
    import redis

    from core.kafka_tools import high_watermarks
    from core.settings import env_for_child
    from streamrec.bench.noop_worker import ready_key, remove_data_dir
    from streamrec.ops.group_offsets import commit_group_offsets
    from streamrec.stack.children import stop_record
    from streamrec.stack.embedded import up
    from streamrec.stack.records import members
    from streamrec.stack.servers import spawn, stop_pid

    for rec in members(state.processes, "worker"):
        stop_record(rec, timeout=30)
    group = f"bench-noop-{uuid.uuid4().hex[:6]}"
    local = settings.model_copy(update={"app_id": group})
    commit_group_offsets(local, settings.topic_events,
                         high_watermarks(settings, settings.topic_events))
    proc = spawn([sys.executable, "-m", "streamrec.bench.noop_worker"],
                 log_path=Path(state.log_dir) / "bench-noop-worker.log",
                 env=env_for_child(local))
    client = redis.Redis.from_url(settings.redis_url)
    try:
        wait_until(lambda: client.exists(ready_key(group)), 120, interval=0.2)
        pids = {"api": state.processes["api"].pid, "broker": state.processes["kafka"].pid,
                "redis": state.processes["redis"].pid, "noop_worker": proc.pid}
        events = burst_events(args.events, args.shoppers, args.items, uuid.uuid4().hex[:6])
        check = lag_zero(local)
        cpu0 = cpu_seconds(pids)
        t0 = time.perf_counter()
        accept_s = post_threads(base, events, batch=args.batch, threads=args.threads, key=key)
        lag0 = wait_until(check, 600) - t0
        cpu1 = cpu_seconds(pids)
        check.probe.close()
    finally:
        stop_pid(proc.pid, timeout=10)
        remove_data_dir(group)  # the worker's own removal, should SIGKILL have stopped it
        client.close()
        # `up` completes the stack: the bench once left it with no worker at all
        print("  restarting the stack's workers ...", flush=True)
        up(settings, echo=lambda _line: None)
    return {"events": len(events), "accept_events_per_s": round(len(events) / accept_s),
            "lag0_seconds": round(lag0, 2), "events_per_s": round(len(events) / lag0),
            "cpu_us_per_event": per_event_us(cpu0, cpu1, len(events))}


def measure_burst(settings: Settings, args: argparse.Namespace, base: str,
                  state: Any) -> dict[str, Any]:
    """Every phase against the stack ``state`` describes (with ``--workers`` K and fewer
    workers in the stack, more for the run up to K); the report."""
    from core.stack_defaults import first_key
    from streamrec.bench.ingest import extra_workers
    from streamrec.stack.servers import stop_pid

    key = first_key(settings.tracking_keys)
    pids = {"api": state.processes["api"].pid, "broker": state.processes["kafka"].pid,
            "redis": state.processes["redis"].pid}
    own = own_pids(state)
    extra = extra_workers(settings, args.workers, len(own), Path(state.log_dir))
    for i, pid in enumerate(own + [p.pid for p in extra]):
        pids["worker" if i == 0 else f"worker{i + 1}"] = pid
    try:
        return _phases(settings, args, base, state, key, pids)
    finally:
        for proc in extra:
            stop_pid(proc.pid, timeout=10)


def _phases(settings: Settings, args: argparse.Namespace, base: str, state: Any, key: str,
            pids: dict[str, int]) -> dict[str, Any]:
    """The phases of :func:`measure_burst`, in order."""
    from streamrec.bench.freshness import held_probe
    from streamrec.bench.ingest import hold_freshness
    from streamrec.bench.machine import python_loop_ms
    from streamrec.bench.options import held_count
    from streamrec.bench.train_time import time_retrain
    from streamrec.stack.servers import stop_pid

    report: dict[str, Any] = {"cpus": os.cpu_count(),
                              "workers": sum(name.startswith("worker") for name in pids),
                              "python_loop_ms": python_loop_ms()}  # the machine's speed
    print(f"burst: {args.events:,} events of {args.shoppers:,} shoppers, {args.threads} "
          f"threads ...", flush=True)
    report["burst"] = phase_burst(settings, args, base, pids, key)
    print(f"  {report['burst']}\nfreshness at {args.rate:,.0f} events/s ...", flush=True)
    held = burst_events(held_count(args.rate, args.hold), args.shoppers, args.items,
                        uuid.uuid4().hex[:6])
    trained = ensure_model(settings)
    waited = wait_quiet(settings.redis_url)  # steady state: no retrain, sweep or backlog
    probe = held_probe(settings, base, args.shoppers, held)
    report["freshness"] = {**hold_freshness(settings, args, base, key, held,
                                            cpu=partial(cpu_seconds, pids), outside=probe),
                           "waited_for_model_s": trained, "waited_for_quiet_s": waited}
    print(f"  {report['freshness']}\nlone events after {args.lone_idle}s idle ...",
          flush=True)
    report["lone"] = phase_lone(base, args, [f"s{i}" for i in range(args.lone_samples)],
                                settings.redis_url)
    print(f"  {report['lone']}", flush=True)
    if not args.skip_ceiling:
        print("infrastructure ceiling (no-op worker) ...", flush=True)
        own = set(own_pids(state))
        for name, pid in pids.items():
            if name.startswith("worker") and pid not in own:
                stop_pid(pid, timeout=10)  # the extra workers go with the stack's ones
        report["ceiling"] = phase_ceiling(settings, args, base, state, key)
        print(f"  {report['ceiling']}", flush=True)
    if args.train_events:
        print(f"retrain on {args.train_events:,} interactions ...", flush=True)
        report["retrain"] = time_retrain(settings, events=args.train_events,
                                         shoppers=args.train_shoppers, items=args.items)
        print(f"  {report['retrain']}", flush=True)
    return report
