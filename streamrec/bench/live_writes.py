"""The live writer of ``streamrec bench serve --live-writes RATE``: a shop whose lists
change while shoppers read them.

Run as its own process (``python -m streamrec.bench.live_writes SPEC``) for the whole
measurement, streamrec's phases and the bare endpoint's alike, so both see the same
machine load (its CPU is reported apart, as ``writer`` in ``cpu_us_per_request``). At
``RATE`` events a second, in 10 batches a second as the worker's batches: each event
rewrites one random bench user's personal list (``SET`` of ``RedisKeys.user_recs``; one
of :data:`POOL` lists built at start by the loader's own
:meth:`streamrec.bench.serve_data.Shop.personal_list`) and adds one to the
popularity of an item drawn by popularity (what the event is about); each batch then
writes the new scores of its items to the popular set and fresh ones to those the
trending set holds (``ZADD``, as the loader writes them), all in one pipeline. Only the
batch's items, as the worker's ``ZINCRBY`` per event touches only those: the API gets
the same reports (each set written once per batch) and Redis does the worker's share of
work, not a rewrite of all 5,000 + 1,667 members ten times a second.
Late batches are written at once (no sleep) until the schedule is caught up; the rate
achieved is what the report shows. After each batch the writer publishes its running
count of events to a small file, which the load generator reads before and after each
phase (:func:`events_written`).
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

#: Batches a second: the worker's batches (``stream`` commits every ~100 ms under load).
BATCHES_PER_S = 10
#: The most events a second ``--live-writes`` accepts (a bound, not a measured limit).
MAX_RATE = 100_000
#: Personal lists built at start, of which each event writes one: building a list costs
#: ~140 µs of the writer's CPU (measured at 2,000 events/s), which on a two-core machine
#: took a third of a core from the servers under test.
POOL = 1000


def batch_sizes(rate: float, batch: int) -> int:
    """Events of batch number ``batch`` at ``rate`` events/s: whole events, spread so that
    any run of batches totals ``rate`` × its seconds (a rate under 10/s leaves some batches
    empty)."""
    per = rate / BATCHES_PER_S
    return int(per * (batch + 1)) - int(per * batch)


def _publish(path: Path, events: int) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(str(events))
    os.replace(tmp, path)


def events_written(path: str | None) -> int | None:
    """The writer's running count of events (None: no writer, or nothing published yet)."""
    if path is None:
        return None
    try:
        return int(Path(path).read_text())
    except (OSError, ValueError):
        return None


def run_writer(spec: dict[str, Any], *, batches: int | None = None) -> int:
    """Write at ``spec["rate"]`` events/s into ``spec["redis_url"]`` until stopped (or for
    ``batches`` batches); returns the events written. ``spec``: ``redis_url``, ``rate``,
    ``users``, ``items``, ``count_path``, ``seed``."""
    import redis

    from core.redis_keys import RedisKeys
    from streamrec.bench.serve_data import Shop

    k = RedisKeys()
    rnd = random.Random(spec.get("seed", 2))
    shop = Shop(spec["items"])
    popular = shop.popular_scores()
    pool = [shop.personal_list(rnd)[1] for _ in range(min(POOL, spec["users"]))]
    client = redis.Redis.from_url(spec["redis_url"])
    count_path = Path(spec["count_path"])
    start, batch, events = time.monotonic(), 0, 0
    _publish(count_path, 0)
    try:
        while batches is None or batch < batches:
            delay = start + batch / BATCHES_PER_S - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            size = batch_sizes(spec["rate"], batch)
            batch += 1
            if not size:
                continue
            pipe = client.pipeline(transaction=False)
            touched: set[int] = set()
            for _ in range(size):
                pipe.set(k.user_recs(f"u{rnd.randrange(spec['users'])}"),
                         pool[rnd.randrange(len(pool))])
                item = shop.item(rnd)
                touched.add(item)
                popular[f"sku-{item}"] += 1.0
            pipe.zadd(k.popular, {f"sku-{i}": popular[f"sku-{i}"] for i in touched})
            shop.write_trending(pipe, rnd, touched)
            pipe.execute()
            events += size
            _publish(count_path, events)
    finally:
        client.close()
    return events


def main() -> None:
    """Entry of the writer process (``python -m streamrec.bench.live_writes SPEC``)."""
    run_writer(json.loads(sys.argv[1]))


if __name__ == "__main__":
    main()
