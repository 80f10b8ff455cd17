"""CPU per event of the worker's batch processor on the burst's own events (issue 14).

Feeds ``streamrec bench ingest --burst``'s events
(``streamrec.bench.burst.burst_events``: 20,000 shoppers and items) through
``stream.processor.EventProcessor`` as the worker would during a burst: 500-event
envelopes decoded by ``stream.decode.decode_events``, steps of
``Settings.stream_step_events``, ``behind`` and pipelined, no model (a burst on a fresh
stack starts without one), the collector at the worker's backlog thresholds and off
inside each step (``core.gc_tuning``), histories in a dict. Starts its own
``redis-server`` (``PORT``, default 18502) and prints JSON: in-process CPU µs per event
(``time.process_time``) and Redis's (``/proc``), numbers that mean something on a shared
machine, unlike wall time. No Faust, no Kafka: the quickest A/B of worker-side cuts (run
it from another checkout's directory with ``PYTHONPATH=.`` to time that version).

Environment: ``N`` events timed (40,000) after one warm-up step, ``PORT``, ``TAG`` the
events' seed (``h1``). Run: ``OPENBLAS_NUM_THREADS=1 .venv/bin/python
scripts/bench_burst_processor.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

import orjson
import redis.asyncio as aioredis

from core.gc_tuning import backlog_gc, step_gc, tune_gc
from core.redis_keys import RedisKeys
from core.settings import Settings
from schemas import TopicEvent
from stream.decode import decode_events
from stream.history_store import DictStore
from stream.processor import EventProcessor, ProcessorConfig
from stream.redis_writer import RedisWriter
from streamrec.bench.burst import burst_events

sys.path.insert(0, ".")
from scripts.cpu_sampler import cpu_s  # noqa: E402

REQUEST_EVENTS = 500


def envelopes(n: int, tag: str, now: float) -> list[bytes]:
    """``n`` burst events as the API's 500-event envelopes, received at ``now``."""
    events = burst_events(n, 20_000, 20_000, tag)
    return [orjson.dumps({"v": 1, "events": [
        {**e, "ts": now, "received_at": now + k * 1e-6}
        for k, e in enumerate(events[i:i + REQUEST_EVENTS])]})
        for i in range(0, n, REQUEST_EVENTS)]


async def feed(proc: EventProcessor, store: DictStore, messages: list[bytes], *,
               step: int, now: float) -> None:
    """Decode ``messages`` (partitions round robin) and apply them in steps of ``step``."""
    batch: list[tuple[TopicEvent, int]] = []
    for offset, raw in enumerate(messages):
        part = offset % 4
        batch += [(ev, part) for ev in decode_events(raw, partition=part, offset=offset,
                                                     timestamp=now)]
        if len(batch) >= step:
            with step_gc(True):  # as stream.agents applies a step while behind
                await proc.process(batch, store, behind=True, pipelined=True)
            batch = []
    if batch:
        with step_gc(True):
            await proc.process(batch, store, behind=True, pipelined=True)
    await proc.drain()


async def measure(url: str, redis_pid: int) -> dict[str, Any]:
    """Warm up on one step, then time ``N`` events."""
    n = int(os.environ.get("N", "40000"))
    settings = Settings(redis_url=url)
    client = aioredis.Redis.from_url(url)
    writer = RedisWriter(client, RedisKeys(), dedupe_ttl_s=settings.dedupe_ttl_s)
    proc = EventProcessor(writer, RedisKeys(), ProcessorConfig.from_settings(settings),
                          lambda: None)
    now, step = time.time(), settings.stream_step_events
    messages = envelopes(n + step, os.environ.get("TAG", "h1"), now)
    store = DictStore()
    tune_gc()
    backlog_gc(True)
    warm = step // REQUEST_EVENTS
    await feed(proc, store, messages[:warm], step=step, now=now)
    r0, c0 = cpu_s(redis_pid) or 0.0, time.process_time()
    await feed(proc, store, messages[warm:], step=step, now=now)
    cpu, rcpu = time.process_time() - c0, (cpu_s(redis_pid) or 0.0) - r0
    keys = await client.dbsize()
    await client.aclose()
    return {"events": n, "worker_us_per_event": round(cpu / n * 1e6, 1),
            "redis_us_per_event": round(rcpu / n * 1e6, 1), "redis_keys": keys,
            "load": os.getloadavg()[0]}


def main() -> None:
    """Start a redis-server of its own, measure, stop it."""
    port = int(os.environ.get("PORT", "18502"))
    with tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen(["redis-server", "--port", str(port), "--save", "",
                                   "--appendonly", "no", "--dir", tmp],
                                  stdout=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            out = asyncio.run(measure(f"redis://127.0.0.1:{port}/0", server.pid))
        finally:
            server.terminate()
            server.wait()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
