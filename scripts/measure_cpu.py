"""CPU per event per worker, CPU per request per API process (and of Redis for each), and
Kafka bytes per event, on a real embedded stack: the numbers behind the capacity plan in
docs/operations.md. Memory per user, item and event is ``scripts/measure_capacity.py``'s.

Starts ``streamrec up`` in a temporary directory (one worker, one API process; the broker
and the Redis shape as given), then

1. posts ``EVENTS`` events through the API (batches of 100 events of 1,000 users over
   2,000 items, the mix of measure_capacity.py) and waits until the worker processed
   them: the CPU seconds the worker, the API and Redis spent, per event;
2. on Apache Kafka, the bytes the ``events`` log holds on disk per event (one replica;
   multiply by the replication factor);
3. trains a model, then sends home-page requests for those users as fast as 16
   connections go, for ``SECONDS``: CPU per request of the API process and of Redis;
4. posts as many events again, now with the model live (every event also folds its
   shopper in): the CPU per event then.

Run: ``OPENBLAS_NUM_THREADS=1 .venv/bin/python scripts/measure_cpu.py [--broker kafka]
[--redis cluster]`` (env ``EVENTS`` 20000, ``SECONDS`` 15). Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, ".")
from streamrec.bench.loadgen import _requests, closed_loop, cpu_seconds  # noqa: E402

EVENTS = int(os.environ.get("EVENTS", "20000"))
SECONDS = float(os.environ.get("SECONDS", "15"))
TRACK, READ = "cpu-track-key-0123456", "cpu-read-key-01234567"
USERS, ITEMS = 1000, 2000


def cli(env: dict[str, str], *args: str, timeout: float = 600) -> str:
    """Run ``streamrec ARGS`` in ``env`` (the measured stack's) and return its output;
    a failure raises, so no number is reported from a broken step."""
    done = subprocess.run([sys.executable, "-m", "streamrec.cli", *args], env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"streamrec {' '.join(args)}: {done.stdout}{done.stderr}")
    return done.stdout


def events(rng: random.Random, tag: str = "c") -> list[dict[str, Any]]:
    """The shop's traffic: 75 % views, 15 % cart adds, 5 % purchases, 5 % impressions."""
    out = []
    for n in range(EVENTS):
        item = f"sku-{min(int(rng.paretovariate(1.2)) - 1, ITEMS - 1)}"
        roll = rng.random()
        event: dict[str, Any] = {"event_id": f"{tag}{n}", "user_id": f"u{rng.randrange(USERS)}",
                                 "type": "view", "item_id": item}
        if roll > 0.95:
            event.update(type="impression", item_ids=[f"sku-{rng.randrange(ITEMS)}"
                                                      for _ in range(10)])
            event.pop("item_id")
        elif roll > 0.90:
            event["type"] = "purchase"
        elif roll > 0.75:
            event["type"] = "add_to_cart"
        out.append(event)
    return out


def pids(state: dict[str, Any], *names: str) -> dict[str, int]:
    """Process name → pid of the stack's processes of these roles (``worker``, ``api``,
    ``redis``): the ones whose CPU time a phase is charged."""
    return {name: rec["pid"] for name, rec in state["processes"].items()
            if rec["name"].partition("-")[0] in names}


def spent(before: dict[str, float], after: dict[str, float], prefix: str) -> float:
    """CPU seconds the processes named ``prefix...`` spent between two readings (a
    process that was not there at the first reading is left out)."""
    return sum(after[n] - before[n] for n in after if n.startswith(prefix) and n in before)


def ingest(env: dict[str, str], state: dict[str, Any], tag: str = "c",
           done: int = 0) -> dict[str, Any]:
    """Phase 1 (and 4): post ``EVENTS`` events through the API, wait until the worker
    processed them (``done`` were processed before), and report the worker's, the API's
    and Redis's CPU per event."""
    watched = pids(state, "worker", "api", "redis")
    base = state["api_url"]
    traffic = events(random.Random(zlib.crc32(tag.encode()) % 1000), tag)  # same per run
    batches = [traffic[i:i + 100] for i in range(0, EVENTS, 100)]
    before = cpu_seconds(watched)
    t0 = time.monotonic()
    with httpx.Client(base_url=base, timeout=30) as http:
        for batch in batches:
            resp = http.post("/v1/events", json={"events": batch}, headers={"X-API-Key": TRACK})
            assert resp.status_code == 202, resp.text
        while True:
            status = json.loads(cli(env, "status", "--json"))
            if status["processed"] >= done + EVENTS and status["lag"] == 0:
                break
            time.sleep(0.5)
    after = cpu_seconds(watched)
    return {"events": EVENTS, "seconds": round(time.monotonic() - t0, 1),
            "worker_cpu_us_per_event": round(spent(before, after, "worker") / EVENTS * 1e6, 1),
            "api_cpu_us_per_event": round(spent(before, after, "api") / EVENTS * 1e6, 1),
            "redis_cpu_us_per_event": round(spent(before, after, "redis") / EVENTS * 1e6, 1)}


def kafka_bytes(state_dir: Path) -> float | None:
    """Bytes of the ``events`` log segments on disk, per event (None without Kafka)."""
    logs = [p for p in (state_dir / "kafka").rglob("events-*/*.log")]
    return round(sum(p.stat().st_size for p in logs) / EVENTS, 1) if logs else None


def serve(state: dict[str, Any]) -> dict[str, Any]:
    """Phase 3: home-page requests as fast as the closed loop goes for ``SECONDS``, and
    the API's and Redis's CPU per request."""
    watched = pids(state, "api", "redis")
    host, _, port = state["api_url"].removeprefix("http://").rpartition(":")
    reqs = _requests(host, int(port), USERS, READ, 20000)

    async def measured() -> dict[str, Any]:
        before = cpu_seconds(watched)
        result: dict[str, Any] = await closed_loop(host, int(port), SECONDS, reqs)
        after = cpu_seconds(watched)
        served = max(1, result["requests"])
        result["api_cpu_us_per_request"] = round(spent(before, after, "api") / served * 1e6, 1)
        result["redis_cpu_us_per_request"] = round(
            spent(before, after, "redis") / served * 1e6, 1)
        return result

    return asyncio.run(measured())


def main() -> None:
    """Measure and print the JSON report."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--broker", choices=("tansu", "kafka"), default="tansu")
    parser.add_argument("--redis", choices=("standalone", "cluster"), default="standalone")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="streamrec-cpu-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMREC_")}
        env.update(STREAMREC_STATE_DIR=f"{tmp}/.streamrec", STREAMREC_API_PORT="0",
                   STREAMREC_TRACKING_KEYS=TRACK, STREAMREC_READ_KEYS=READ,
                   STREAMREC_RATE_LIMIT_READ_PER_S="0", STREAMREC_RATE_LIMIT_TRACKING_PER_S="0",
                   STREAMREC_RETRAIN_INTERVAL_S="0", STREAMREC_LOG_LEVEL="WARNING",
                   STREAMREC_WORKERS="1", OPENBLAS_NUM_THREADS="1")
        cli(env, "up", "--broker", args.broker, "--redis", args.redis, "--timeout", "180")
        try:
            state = json.loads((Path(tmp) / ".streamrec" / "stack.json").read_text())
            report: dict[str, Any] = {"broker": args.broker, "redis": args.redis,
                                      "cpus": os.cpu_count(), "ingest": ingest(env, state)}
            report["kafka_bytes_per_event"] = kafka_bytes(Path(tmp) / ".streamrec")
            cli(env, "train", "--timeout", "120")
            while any(w.get("sweep_pending") for w in json.loads(
                    cli(env, "status", "--json"))["workers"]):  # the re-listing is done
                time.sleep(0.5)
            report["serve"] = serve(state)
            report["ingest_with_model"] = ingest(env, state, "m", EVENTS)
        finally:
            cli(env, "down", "--timeout", "120")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
