"""The infrastructure ceiling's worker: a Faust agent that does nothing but decode each
message and write one Redis key per event.

``streamrec bench ingest --burst`` stops the stack's worker, starts this one in its own
consumer group (from the log's end) and posts the same burst again: what the API, the
broker, Redis and Faust cost on this machine with no recommender work, measured the way
the real pipeline is (events ÷ time until the group's lag is 0). It batches like the
worker (``stream.faust_compat.idle_take.take_batches``, the same batch size and wait,
the same Faust patches) and writes
each batch in one Redis round trip (``SET`` of ``bench:noop:{event id}``, expiring after
ten minutes). Once its partitions are assigned it sets ``bench:noop:ready:{group}``.
Faust's data directory (:func:`data_dir`, empty: the worker has no tables) goes when the
worker stops, and the bench removes it again after stopping the worker, in case it was
killed.

Run: ``python -m streamrec.bench.noop_worker`` with the stack's settings in the
environment and ``STREAMREC_APP_ID`` naming its group.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

#: How long the per-event keys live (they only have to cost a write).
KEY_TTL_MS = 600_000


def ready_key(group: str) -> str:
    """The Redis key this worker sets once it consumes."""
    return f"bench:noop:ready:{group}"


def data_dir(group: str) -> Path:
    """Faust's data directory for the worker of ``group``: its own under ``$TMPDIR``, so
    the bench can remove it whatever way the worker ended."""
    return Path(os.environ.get("TMPDIR", "/tmp")) / group


def remove_data_dir(group: str) -> None:
    """Remove :func:`data_dir` (absent already is fine): nothing in it outlives a run."""
    shutil.rmtree(data_dir(group), ignore_errors=True)


def main() -> None:
    """Run the no-op worker until SIGTERM."""
    import faust
    import orjson

    from core.broker import fetch_wait_ms
    from core.connections import faust_credentials
    from core.redis_client import async_client
    from core.settings import get_settings
    from stream import faust_compat
    from stream.faust_compat.idle_take import take_batches

    settings = get_settings()
    faust_compat.install(fetch_max_wait_ms=fetch_wait_ms(settings),
                         max_pending_records=4 * settings.stream_step_events,
                         unsafe=settings.faust_compat_unsafe)
    app = faust.App(settings.app_id,
                    broker=[f"kafka://{h}" for h in settings.kafka_bootstrap.split(",")],
                    store="memory://", web_enabled=False, topic_disable_leader=True,
                    broker_credentials=faust_credentials(settings),
                    broker_session_timeout=settings.session_timeout_s,
                    broker_commit_interval=1.0, consumer_auto_offset_reset="latest",
                    datadir=str(data_dir(settings.app_id)))
    topic = app.topic(settings.topic_events, key_type=bytes, value_type=bytes,
                      key_serializer="raw", value_serializer="raw")
    client = async_client(settings)

    @app.agent(topic)
    async def write_one_key_per_event(stream: Any) -> None:
        async for batch in take_batches(stream, settings.stream_batch_size,
                                        settings.stream_batch_within_s):
            pipe = client.pipeline(transaction=False)
            for event in batch:
                for ev in orjson.loads(event.message.value).get("events", ()):
                    pipe.set(f"bench:noop:{ev.get('event_id')}", b"1", px=KEY_TTL_MS)
            await pipe.execute()

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def assigned(sender: Any, **kwargs: Any) -> None:
        await client.set(ready_key(settings.app_id), "1", px=KEY_TTL_MS)

    from faust.worker import Worker

    try:
        Worker(app, loglevel="warning", quiet=True).execute_from_commandline()
    finally:  # SystemExit on SIGTERM, or an error
        remove_data_dir(settings.app_id)


if __name__ == "__main__":
    main()
