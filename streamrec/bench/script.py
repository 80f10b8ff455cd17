"""Instructions redis-server executes per recommendation request, counted by callgrind.

``python -m streamrec.bench.script`` starts a redis-server under ``valgrind
--tool=callgrind`` (instrumentation off while data loads), loads the data of ``streamrec
bench serve`` (:func:`streamrec.bench.serve_data.load_data`), then counts the instructions
Redis executes for ``--calls`` home-page requests (``n=10``, rate limit checked) and for
a few refreshes of the API's fallback snapshot (200 popular items), and for home
requests with each merchandising parameter of ``bench serve --mix merch``. Each request
runs as the API runs it (:meth:`api.reader.Reader.read`) on one Redis: one ``SERVE_ONE``
call (the rate limit, the entity's reads and the list). Wall-clock and CPU
time move with whatever else the machine runs; instruction counts do not (repeat runs
agree within ~2 %), so this is how script changes are compared on a shared machine.
Needs ``valgrind`` and ``callgrind_control`` on the PATH; Linux only.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis
import redis.asyncio

from api.filters import Merch
from api.list_query import ListQuery, RateCheck
from api.metrics import Metrics
from api.ranking import POPULAR_CHAIN, user_chain
from api.reader import SNAPSHOT_SIZE, Reader
from core.net import free_port, wait_for_port
from core.settings import Settings
from streamrec.bench.serve_data import load_data
from streamrec.stack.servers import redis_binary


def _callgrind(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], capture_output=True, check=False)


def instructions(queries: list[ListQuery], reader: Reader, loop: asyncio.AbstractEventLoop,
                 pid: int, dump: Path) -> float:
    """Instructions redis-server executed per request of ``queries`` (each read once)."""

    def run(batch: list[ListQuery]) -> None:
        async def read_all() -> None:
            for query in batch:
                await reader.read(query)
        loop.run_until_complete(read_all())

    run(queries[:10])  # warm: script cache, key lookups, connections
    _callgrind(pid, "-z")
    _callgrind(pid, "-i", "on")
    run(queries)
    _callgrind(pid, "-i", "off")
    before = set(dump.parent.glob(dump.name + "*"))
    _callgrind(pid, "-d")
    for _ in range(100):
        new = set(dump.parent.glob(dump.name + "*")) - before
        if new:
            time.sleep(0.2)  # let callgrind finish writing
            text = max(new, key=lambda p: p.stat().st_mtime).read_text(errors="replace")
            found = re.search(r"^totals: (\d+)", text, re.M)
            if found:
                return int(found.group(1)) / len(queries)
        time.sleep(0.1)
    raise RuntimeError("callgrind wrote no dump")


def main(argv: list[str] | None = None) -> None:
    """Print instructions per call for home requests and snapshot refreshes."""
    parser = argparse.ArgumentParser(prog="python -m streamrec.bench.script",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000, help="users with personal lists")
    parser.add_argument("--items", type=int, default=5000, help="catalog size")
    parser.add_argument("--calls", type=int, default=300, help="home requests counted")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="streamrec-bench-script-"))
    port = free_port()
    dump = work / "callgrind.out"
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={dump}",
         redis_binary(), "--port", str(port), "--save", "", "--appendonly", "no",
         "--dir", str(work)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port("127.0.0.1", port, timeout=60)
        url = f"redis://127.0.0.1:{port}/0"
        load_data(url, args.users, args.items)
        loop = asyncio.new_event_loop()
        reader = Reader(redis.asyncio.Redis.from_url(url), Settings(redis_url=url), Metrics())
        _, home = user_chain(None, None)
        rate = RateCheck("bench:rate", 1e-6, 1e6)
        homes = [ListQuery(home, 10, entity=f"u{i % args.users}", rate=rate)
                 for i in range(args.calls)]
        snapshot = [ListQuery(POPULAR_CHAIN, n=SNAPSHOT_SIZE, raw_scores=True,
                              context="popular")] * 10
        print(f"home request (n=10): {instructions(homes, reader, loop, proc.pid, dump):,.0f} "
              "instructions per request")
        # The merchandising requests of ``bench serve --mix merch``, one kind at a time.
        kinds = {"category filter": lambda i: Merch(categories=(f"c{i % 40}",)),
                 "price band": lambda i: Merch(price_min=float(i % 150),
                                               price_max=float(i % 150 + 50)),
                 "max_per_category=2": lambda i: Merch(cap=2)}
        for label, merch in kinds.items():
            reqs = [ListQuery(home, 10, entity=f"u{i % args.users}", rate=rate,
                              merch=merch(i)) for i in range(args.calls)]
            print(f"home request with {label}: "
                  f"{instructions(reqs, reader, loop, proc.pid, dump):,.0f} "
                  "instructions per request")
        print(f"fallback snapshot refresh (n={SNAPSHOT_SIZE}): "
              f"{instructions(snapshot, reader, loop, proc.pid, dump):,.0f} "
              "instructions per request")
        reader.close()
        loop.run_until_complete(reader._redis.aclose())
        loop.close()
    finally:
        proc.terminate()
        proc.wait(timeout=60)


if __name__ == "__main__":
    main(sys.argv[1:])
