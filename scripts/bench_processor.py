"""CPU per event of the worker's batch processor alone (no Faust, no Kafka).

Drives ``stream.processor.EventProcessor`` with Taobao events against the running
stack's Redis and live model (``streamrec up``, ``load``, ``train`` first), histories in
a dict as the integration tests keep them, and prints JSON: in-process CPU µs per event
and per refreshed entity (``time.process_time``) and Redis-server CPU µs per event (from
``/proc``) — numbers that stay meaningful on a loaded machine, unlike wall time.

Environment: ``N`` events timed (8000), ``BS`` events per batch (4000), ``START`` first
CSV row (0: the rows ``load --limit`` trained on, as ``bench ingest`` replays them),
``STACK`` state file (``.streamrec/stack.json``), ``DATA`` the CSV, ``PROF`` a cProfile
output path. Run from a checkout:
``OPENBLAS_NUM_THREADS=1 .venv/bin/python scripts/bench_processor.py``; from another
checkout's directory with ``PYTHONPATH=.`` and ``STACK`` pointing here it times that
version against the same Redis (the A/B of docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import cProfile
import csv
import json
import os
import pstats
import sys
import time
import uuid
from typing import Any

import redis.asyncio as aioredis

from core.redis_keys import RedisKeys
from core.settings import Settings
from schemas import TopicEvent
from stream.live_model import current_version, load_model
from stream.processor import EventProcessor, ProcessorConfig
from stream.redis_writer import RedisWriter

sys.path.insert(0, ".")
from scripts.cpu_sampler import cpu_s  # noqa: E402
from stream.history_store import DictStore  # noqa: E402

DATA = os.environ.get("DATA", "../shared/data/taobao-userbehavior-window/"
                              "UserBehavior_2017-11-26_0900-1110CST.csv")
TYPES = {"pv": "view", "cart": "add_to_cart", "fav": "add_to_cart", "buy": "purchase"}


def taobao_rows(start: int, n: int) -> list[tuple[str, str, str]]:
    """``(user, item, type)`` of CSV rows ``start .. start + n`` (known types only)."""
    out: list[tuple[str, str, str]] = []
    with open(DATA, newline="") as fh:
        for row in csv.reader(fh):
            if len(row) == 5 and row[3] in TYPES:
                out.append((row[0], row[1], TYPES[row[3]]))
            if len(out) >= start + n:
                break
    return out[start:start + n]


def redis_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    seconds = cpu_s(pid)
    if seconds is None:
        raise SystemExit(f"process {pid} is gone")
    return seconds


async def stack_processor() -> tuple[dict[str, Any], RedisWriter, EventProcessor]:
    """The running stack's description (``STACK``, default ``.streamrec/stack.json``) and
    an ``EventProcessor`` on its Redis and live model, as the worker would build them."""
    with open(os.environ.get("STACK", ".streamrec/stack.json")) as fh:
        stack: dict[str, Any] = json.load(fh)
    settings = Settings(redis_url=stack["redis_url"])
    client = aioredis.Redis.from_url(stack["redis_url"])
    keys = RedisKeys()
    version = await current_version(client, keys)
    if version is None:
        raise SystemExit("no live model: run `streamrec train` first")
    model = await load_model(client, keys, version, regularization=settings.als_regularization,
                             alpha=settings.als_alpha,
                             candidate_limit=settings.foldin_candidates)
    if model is None:
        raise SystemExit(f"model {version} could not be loaded")
    writer = RedisWriter(client, keys, dedupe_ttl_s=3600)
    proc = EventProcessor(writer, keys, ProcessorConfig(list_size=settings.list_size,
                                                        blend_depth=settings.blend_depth),
                          lambda: model)
    return stack, writer, proc


async def main() -> None:
    """Warm up on one batch, then time ``N`` events in batches of ``BS``."""
    n = int(os.environ.get("N", "8000"))
    bs = int(os.environ.get("BS", "4000"))
    prof = os.environ.get("PROF")
    stack, writer, proc = await stack_processor()
    tag = uuid.uuid4().hex[:6]
    now = time.time()
    rows = taobao_rows(int(os.environ.get("START", "0")), n + bs)
    events = [(TopicEvent(event_id=f"{tag}-{i}", type=t, user_id=u, item_id=it, ts=now,
                          received_at=now), hash(u) % 4) for i, (u, it, t) in enumerate(rows)]
    store = DictStore()
    await proc.process(events[:bs], store)  # warm-up: caches, first allocations
    events = events[bs:]
    pid = stack["processes"]["redis"]["pid"]
    profile = cProfile.Profile() if prof else None
    r0, c0, w0 = redis_cpu_s(pid), time.process_time(), time.perf_counter()
    entities = 0
    if profile:
        profile.enable()
    for i in range(0, n, bs):
        entities += (await proc.process(events[i:i + bs], store)).entities_refreshed
    if profile:
        profile.disable()
    cpu, wall, rcpu = time.process_time() - c0, time.perf_counter() - w0, redis_cpu_s(pid) - r0
    print(json.dumps({
        "events": n, "batch": bs, "entities": entities,
        "cpu_us_per_event": round(cpu / n * 1e6, 1),
        "cpu_us_per_entity": round(cpu / max(entities, 1) * 1e6, 1),
        "events_per_cpu_s": round(n / cpu), "wall_s": round(wall, 2),
        "redis_cpu_us_per_event": round(rcpu / n * 1e6, 1), "load": os.getloadavg()[0],
    }))
    if profile and prof:
        profile.dump_stats(prof)
        pstats.Stats(prof).sort_stats("cumulative").print_stats(35)
    await writer.r.aclose()


if __name__ == "__main__":
    asyncio.run(main())
