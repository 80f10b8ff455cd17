"""Wall and CPU time of the full retrain's read stage, by number of reading processes.

Against a running stack (``streamrec up``): writes the retrain bench's 1,000,000
interactions (:func:`streamrec.bench.train_time.produce_interactions`) to the topic
``TOPIC`` unless it already holds them, then reads it into the matrix
(:func:`stream.retrain_read.iter_topic_events` and
:func:`recommender.interactions.build_matrix_from_rows`, as the retrain does) ``ROUNDS``
times for each of ``PROCS``, alternating, and prints one JSON line per read (wall
seconds, CPU seconds of this process and of the readers, a digest of the matrix: the
same for every number of processes) and the medians.

Environment: ``TOPIC`` (``bench-retrain-read``), ``PROCS`` (``1,2``), ``ROUNDS`` (3).
Run from a checkout: ``OPENBLAS_NUM_THREADS=1 .venv/bin/python scripts/bench_retrain_read.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import resource
import statistics
import time

from core.gc_tuning import paused
from core.kafka_tools import create_topics, high_watermarks
from core.settings import Settings, get_settings
from recommender.interactions import build_matrix_from_rows
from stream.retrain_read import iter_topic_events
from streamrec.bench.train_time import produce_interactions


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def read_once(settings: Settings, procs: int) -> dict[str, float | int | str]:
    """One read of the topic into the matrix with ``procs`` reading processes."""
    wall, cpu, children = time.perf_counter(), time.process_time(), _children_cpu()
    with paused():
        data = build_matrix_from_rows(iter_topic_events(settings, processes=procs),
                                      max_links=settings.identify_max_links)
    m = data.matrix
    digest = hashlib.sha1(m.indptr.tobytes() + m.indices.tobytes() + m.data.tobytes()
                          + "\n".join(data.user_map.ids).encode()).hexdigest()[:12]
    return {"procs": procs, "wall_s": round(time.perf_counter() - wall, 2),
            "cpu_s": round(time.process_time() - cpu, 2),
            "readers_cpu_s": round(_children_cpu() - children, 2),
            "events": data.n_events, "digest": digest}


def main() -> None:
    """Produce the topic if needed, then time the reads, alternating."""
    topic = os.environ.get("TOPIC", "bench-retrain-read")
    procs = [int(p) for p in os.environ.get("PROCS", "1,2").split(",")]
    rounds = int(os.environ.get("ROUNDS", "3"))
    settings = get_settings().model_copy(update={"topic_events": topic})
    create_topics(settings)
    if sum(high_watermarks(settings, topic).values()) == 0:
        asyncio.run(produce_interactions(settings, topic, 1_000_000, shoppers=100_000,
                                         items=20_000))
    walls: dict[int, list[float]] = {p: [] for p in procs}
    for _ in range(rounds):
        for p in procs:
            run = read_once(settings, p)
            walls[p].append(float(run["wall_s"]))
            print(json.dumps(run), flush=True)
    print(json.dumps({"median_wall_s": {p: statistics.median(w) for p, w in walls.items()}}))


if __name__ == "__main__":
    main()
