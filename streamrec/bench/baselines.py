"""The two ceilings ``streamrec bench ingest`` compares the pipeline with, over exactly
the topic range its end-to-end phase wrote: a plain aiokafka consumer that decodes every
message (broker + client), and a bare Faust agent in its own process and consumer group
that only decodes and counts (Faust's own per-message cost).
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from core.settings import Settings


async def raw_consume(settings: Settings, starts: dict[int, int], ends: dict[int, int]
                      ) -> dict[str, float]:
    """A plain aiokafka consumer over exactly [starts, ends): messages and events per s."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap.split(","),
                                enable_auto_commit=False, fetch_max_wait_ms=50,
                                max_partition_fetch_bytes=8 << 20)
    await consumer.start()
    try:
        tps = [TopicPartition(settings.topic_events, p) for p in ends if ends[p] > starts[p]]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, starts[tp.partition])
        remaining = {tp: ends[tp.partition] for tp in tps}
        messages = events = 0
        t0 = time.perf_counter()
        while remaining:
            batches = await consumer.getmany(timeout_ms=500, max_records=20000)
            for tp, records in batches.items():
                for r in records:
                    if r.offset < ends[tp.partition]:
                        messages += 1
                        events += len(json.loads(r.value).get("events", [None]))
                if consumer_done(await consumer.position(tp), remaining.get(tp)):
                    remaining.pop(tp, None)
        elapsed = time.perf_counter() - t0
    finally:
        await consumer.stop()
    return {"messages": messages, "events": events, "seconds": round(elapsed, 3),
            "messages_per_s": round(messages / elapsed), "events_per_s": round(events / elapsed)}


def consumer_done(position: int, end: int | None) -> bool:
    """True once a partition's position reached its end offset."""
    return end is None or position >= end


def bare_faust(settings: Settings, starts: dict[int, int], ends: dict[int, int],
               out: Path, log: Path) -> dict[str, Any]:
    """Run the bare Faust agent in its own process; its JSON result."""
    from core.settings import env_for_child
    from streamrec.ops.group_offsets import commit_group_offsets
    from streamrec.stack.servers import spawn, stop_pid

    group = f"bench-faust-{uuid.uuid4().hex[:6]}"
    commit_group_offsets(settings.model_copy(update={"app_id": group}),
                         settings.topic_events, starts)
    total = sum(ends[p] - starts[p] for p in ends)
    env = env_for_child(settings.model_copy(update={"app_id": group}))
    out.unlink(missing_ok=True)
    proc = spawn([sys.executable, "-m", "streamrec.bench.baselines", "--bare-faust",
                  str(total), str(out)], log_path=log, env=env,
                 cwd=settings.state_dir if settings.state_dir.exists() else None)
    try:
        deadline = time.monotonic() + 180
        while not out.exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
    finally:
        stop_pid(proc.pid, timeout=10)
    if not out.exists():
        return {"error": f"bare Faust agent gave no result (log: {log})"}
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def _bare_faust_main(total: int, out: Path) -> None:
    """Entry of the bare Faust process: count messages and events, write the rate."""
    import faust

    from core.broker import fetch_wait_ms
    from core.settings import get_settings
    from stream.faust_compat.fetch_wait import set_fetch_max_wait

    settings = get_settings()
    set_fetch_max_wait(fetch_wait_ms(settings))
    app = faust.App(settings.app_id, broker=f"kafka://{settings.kafka_bootstrap}",
                    store="memory://", web_enabled=False, topic_disable_leader=True,
                    broker_session_timeout=settings.session_timeout_s,
                    consumer_auto_offset_reset="earliest",
                    datadir=str(Path(os.environ.get("TMPDIR", "/tmp")) / settings.app_id))
    topic = app.topic(settings.topic_events, key_type=bytes, value_type=bytes,
                      key_serializer="raw", value_serializer="raw")
    seen = {"messages": 0, "events": 0, "t0": 0.0}

    @app.agent(topic)
    async def count(stream: Any) -> None:
        async for value in stream:
            if not seen["messages"]:
                seen["t0"] = time.perf_counter()
            seen["messages"] += 1
            seen["events"] += len(json.loads(value).get("events", [None]))
            if seen["messages"] >= total:
                elapsed = time.perf_counter() - seen["t0"]
                out.write_text(json.dumps({
                    "messages": seen["messages"], "events": seen["events"],
                    "seconds": round(elapsed, 3),
                    "messages_per_s": round(seen["messages"] / elapsed),
                    "events_per_s": round(seen["events"] / elapsed)}))

    from faust.worker import Worker

    Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "--bare-faust":
    _bare_faust_main(int(sys.argv[2]), Path(sys.argv[3]))
