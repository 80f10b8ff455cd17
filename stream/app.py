"""The Faust app of the worker, built from settings.

The app's configuration only: topics (:mod:`stream.topics`), the history table
(:mod:`stream.history_store`), agents (:mod:`stream.agents`), timers
(:mod:`stream.timers`) and rebalance hooks (:mod:`stream.rebalance`) are attached by
:func:`stream.worker.create_app`. Tansu's consumer-group joins take about half the
session timeout, so the session timeout comes from settings (6 s by default) instead
of Faust's 60 s.
"""

from __future__ import annotations

import faust

from core.connections import faust_credentials
from core.settings import Settings


def build_app(settings: Settings) -> faust.App:
    """A configured Faust app with nothing attached yet."""
    datadir = settings.state_dir / "worker-data"
    datadir.mkdir(parents=True, exist_ok=True)
    return faust.App(
        settings.app_id,
        broker=[f"kafka://{h}" for h in settings.kafka_bootstrap.split(",")],
        store="memory://",
        # Faust keeps a per-app folder; keep it under the state dir, not the cwd.
        datadir=str(datadir),
        topic_partitions=settings.topic_partitions,
        broker_credentials=faust_credentials(settings),
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=max(0.5, settings.session_timeout_s / 3),
        consumer_auto_offset_reset="earliest",
        topic_disable_leader=True,
        topic_replication_factor=settings.topic_replication_factor,
        web_enabled=False,
        producer_acks=-1,
        # Faust's default producer settings (16 KB batches, no linger): the history
        # changelog's records leave as one batch per partition because the worker hands a
        # whole batch's records over at once (stream.history_store.TableHistoryStore.flush);
        # multi-record batches are safe on Tansu, whose ListOffsets "latest" answers low
        # for them, since recovery reads the fetch high watermark there
        # (stream.faust_compat.recovery_ends).
        stream_buffer_maxsize=8192,
        # No standby copies of the history table: with Faust's default (1) every worker
        # also consumed the other workers' changelog partitions, one record per refreshed
        # entity, through Faust's per-message path — ~15-19 % of a worker's main thread in
        # a py-spy profile of the two-worker Taobao bench. A worker that takes over a
        # partition restores it from the changelog instead, as a newly started one does.
        table_standby_replicas=0,
        broker_commit_every=1000,
        broker_commit_interval=1.0,
    )
