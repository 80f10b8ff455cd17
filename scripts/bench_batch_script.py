"""Redis's cost per event of the worker's batch write, on a scratch redis-server.

Drives ``stream.processor.EventProcessor`` (no model, histories in a dict) with synthetic
views of ``SHOPPERS`` shoppers and items: ``PRIME`` events first (the histories and
co-occurrence lists they leave), then ``N`` timed events in batches of ``BS``, and prints
JSON: Redis-server CPU µs per event (``INFO cpu``), the batch scripts' share
(``EVALSHA`` in ``INFO commandstats``, which includes the commands they run), the
commands' own time, the processor's wall clock per event, and the costliest commands.
``COOC`` sets ``cooc_window`` (default: the setting's default). The co-occurrence pairs
grow with the histories up to 2 × ``cooc_window`` per event, so ``PRIME`` decides
what is measured (docs/benchmarks.md "Freshness, due re-folds at a floor rate").

``REDIS_URL`` must name an empty database of a redis-server of its own: the run writes
to it and resets its statistics. Example::

    redis-server --port 26399 --save "" --appendonly no --daemonize yes
    REDIS_URL=redis://127.0.0.1:26399/0 PRIME=300000 COOC=20 \\
        .venv/bin/python scripts/bench_batch_script.py
    redis-cli -p 26399 flushall; REDIS_URL=... PRIME=300000 COOC=8 ...
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
from typing import Any

import redis

sys.path.insert(0, ".")

from core.redis_client import async_client  # noqa: E402
from core.redis_keys import RedisKeys  # noqa: E402
from core.settings import Settings  # noqa: E402
from schemas import TopicEvent  # noqa: E402
from stream.bounds import StateBounds  # noqa: E402
from stream.history_store import DictStore  # noqa: E402
from stream.processor import EventProcessor, ProcessorConfig  # noqa: E402
from stream.redis_writer import RedisWriter  # noqa: E402

#: Commands that are the measurement's own, not the batch's.
OWN = {"cmdstat_info", "cmdstat_config|resetstat", "cmdstat_dbsize"}


def views(n: int, shoppers: int, seed: int, t0: float, size: int
          ) -> list[list[tuple[TopicEvent, int]]]:
    """``n`` views of random shoppers and items, in batches of ``size``."""
    rng = random.Random(seed)
    events = [(TopicEvent(event_id=f"e{seed}-{i}", type="view",
                          item_id=f"i{rng.randrange(shoppers)}",
                          user_id=f"u{rng.randrange(shoppers)}",
                          ts=t0 + i / 1000, received_at=t0 + i / 1000), 0)
              for i in range(n)]
    return [events[k:k + size] for k in range(0, n, size)]


def redis_cpu(r: redis.Redis) -> float:
    """Seconds of CPU the redis-server used so far."""
    info: dict[str, Any] = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def measure(url: str) -> dict[str, Any]:
    """Prime, then time ``N`` events; the per-event costs."""
    env = os.environ
    n, size = int(env.get("N", "30000")), int(env.get("BS", "300"))
    prime, shoppers = int(env.get("PRIME", "60000")), int(env.get("SHOPPERS", "20000"))
    config = (ProcessorConfig(bounds=StateBounds(), cooc_window=int(env["COOC"]))
              if env.get("COOC") else ProcessorConfig(bounds=StateBounds()))
    sync = redis.Redis.from_url(url)
    if sync.dbsize():
        raise SystemExit(f"{url} is not empty: give the run a scratch database")
    client = async_client(Settings(redis_url=url))
    keys = RedisKeys()
    writer = RedisWriter(client, keys, dedupe_ttl_s=3600, bounds=StateBounds())
    proc = EventProcessor(writer, keys, config, lambda: None)
    store = DictStore()
    t0 = time.time() - 200
    try:
        for batch in views(prime, shoppers, 1, t0, 500):
            await proc.process(batch, store)
        sync.config_resetstat()
        cpu0, wall0 = redis_cpu(sync), time.perf_counter()
        for batch in views(n, shoppers, 2, t0 + 100, size):
            await proc.process(batch, store)
        wall, cpu = time.perf_counter() - wall0, redis_cpu(sync) - cpu0
    finally:
        await client.aclose()
    stats: dict[str, Any] = sync.info("commandstats")
    scripts = sum(v["usec"] for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval"))
    commands = sum(v["usec"] for k, v in stats.items()
                   if k not in OWN and k not in ("cmdstat_evalsha", "cmdstat_eval"))
    top = sorted(((v["usec"], k[len("cmdstat_"):], v["calls"]) for k, v in stats.items()
                  if k not in OWN), reverse=True)[:8]
    return {"events": n, "prime": prime, "cooc_window": config.cooc_window,
            "redis_cpu_us_per_event": round(1e6 * cpu / n, 1),
            "scripts_us_per_event": round(scripts / n, 1),
            "commands_us_per_event": round(commands / n, 1),
            "processor_wall_us_per_event": round(1e6 * wall / n, 1),
            "top": [{"command": c, "us_per_event": round(u / n, 1),
                     "calls_per_event": round(k / n, 1)} for u, c, k in top]}


def main() -> None:
    """Run :func:`measure` against ``REDIS_URL`` and print its JSON."""
    url = os.environ.get("REDIS_URL")
    if not url:
        raise SystemExit("REDIS_URL: the scratch redis-server's URL (see the docstring)")
    print(json.dumps(asyncio.run(measure(url)), indent=1))


if __name__ == "__main__":
    main()
