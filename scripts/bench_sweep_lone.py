"""Lone events sent while a worker's refresh sweep runs after a retrain (issue 14).

Against a running stack (``streamrec up --broker tansu``, the same ``STREAMREC_*``
environment): posts ``N_EVENTS`` burst events (``streamrec.bench.burst.burst_events``,
20,000 shoppers and items) and waits for lag 0; then ``ROUNDS`` times trains and publishes
a model (``stream.retrain.train_and_publish``: the worker swaps to it and sweeps its
recently active shoppers' lists) and at once sends ``PER_ROUND`` lone events, 0.3 s
apart, each to a shopper with a list, timing 202 → that shopper's changed list
(``streamrec.bench.freshness.personal_freshness``). Prints each sample with the sweep's
pending count from the worker's heartbeat, then JSON: p50, p90, max, and the samples
sent while the sweep was pending. Side by side: run it against a stack started from
another checkout (``PYTHONPATH=<checkout>`` for both ``streamrec up`` and this script).

Run: ``OPENBLAS_NUM_THREADS=1 STREAMREC_STATE_DIR=/tmp/x .venv/bin/streamrec up --broker
tansu && OPENBLAS_NUM_THREADS=1 STREAMREC_STATE_DIR=/tmp/x .venv/bin/python
scripts/bench_sweep_lone.py; STREAMREC_STATE_DIR=/tmp/x .venv/bin/streamrec down``.
"""

from __future__ import annotations

import json
import os

import httpx
import numpy as np

from core.settings import get_settings
from core.stack_defaults import first_key
from stream.retrain import train_and_publish
from streamrec.bench.burst import burst_events, lag_zero, post_threads
from streamrec.bench.freshness import _ids, personal_freshness
from streamrec.bench.quiet import wait_until
from streamrec.stack.probes import worker_heartbeats


def main() -> None:
    """Burst, then lone events during each post-retrain sweep; prints the samples."""
    settings = get_settings()
    base = f"http://127.0.0.1:{settings.api_port}"
    read_key, tracking_key = first_key(settings.read_keys), first_key(settings.tracking_keys)
    n = int(os.environ.get("N_EVENTS", "60000"))
    took = post_threads(base, burst_events(n, 20000, 20000, "probe"), batch=100, threads=4,
                        key=tracking_key)
    wait_until(lag_zero(settings), 600, 0.2)
    print(f"posted {n:,} events in {took:.1f} s, lag 0", flush=True)
    samples: list[float | None] = []
    pending: list[str | None] = []
    trainable = settings.model_copy(update={"retrain_min_events": 1})
    headers = {"X-API-Key": read_key} if read_key else {}
    with httpx.Client(base_url=base, timeout=5.0, trust_env=False) as client:
        for rnd in range(int(os.environ.get("ROUNDS", "2"))):
            train_and_publish(trainable, wait_live_s=60, threads=0, busy_wait_s=300)
            items = _ids(client.get("/v1/popular?n=100", headers=headers))
            for i in range(int(os.environ.get("PER_ROUND", "12"))):
                user = f"s{rnd * 1000 + i}"
                beats = list(worker_heartbeats(settings.redis_url).values())
                left = beats[0].get("sweep_pending") if beats else None
                sample = personal_freshness(client, users=[user], items=items,
                                            read_key=read_key, tracking_key=tracking_key,
                                            timeout_s=5, idle_s=0.3)[0]
                samples.append(sample)
                pending.append(left)
                print(f"round {rnd} {user} sweep_pending={left} seconds={sample}", flush=True)
    ms = np.array([x for x in samples if x is not None]) * 1000
    print(json.dumps({
        "n": int(ms.size), "p50_ms": round(float(np.median(ms)), 1),
        "p90_ms": round(float(np.percentile(ms, 90)), 1), "max_ms": round(float(ms.max()), 1),
        "while_pending_ms": [round(x * 1000) for x, p in zip(samples, pending, strict=True)
                             if x is not None and p not in (None, "0")]}))


if __name__ == "__main__":
    main()
