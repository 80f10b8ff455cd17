"""The Faust app: topics, the user-history table, agents and timers; and its entry point.

``run_worker(settings)`` builds the app from settings and runs one worker process.
Tansu's consumer-group joins take about half the session timeout, so the session timeout
comes from settings (6 s by default) instead of Faust's 60 s.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
import weakref
from functools import partial
from typing import Any

import faust
import orjson
import redis.asyncio as aioredis
from faust.streams import _current_event
from prometheus_client import start_http_server

from core.connections import faust_credentials, redis_options
from core.net import free_port
from core.redis_keys import RedisKeys
from core.settings import Settings
from core.topics import HISTORY_TABLE, changelog_configs
from recommender.refresh import grown
from schemas import EventEnvelope, TopicEvent
from stream import faust_commit_safety, metrics
from stream.applied import AppliedOffsets, behind_log, offset_spans, recover_stale
from stream.decode import PoisonMessage, dead_letter_value, decode_catalog, decode_events
from stream.faust_tuning import set_fetch_max_wait
from stream.item_ops import abuse_policy
from stream.live_model import LiveModel, current_version, load_model
from stream.processor import EventProcessor, ProcessorConfig
from stream.rebuild import rebuild_if_flushed, retry_redis, survives_outage
from stream.redis_writer import RedisWriter

log = logging.getLogger("streamrec.worker")


class TableHistoryStore:
    """HistoryStore over the Faust table, writing each key's changelog to the partition
    its source message came from (a batch mixes partitions)."""

    def __init__(self, table: Any, events_by_partition: dict[int, Any]) -> None:
        self.table = table
        self.events_by_partition = events_by_partition

    def get(self, entity: str) -> dict[str, Any] | None:
        """The entity's history or None."""
        return self.table.get(entity)

    def put(self, entity: str, value: dict[str, Any], partition: int) -> None:
        """Store a history with its changelog on the source partition."""
        token = _current_event.set(weakref.ref(self.events_by_partition[partition]))
        try:
            self.table[entity] = value
        finally:
            _current_event.reset(token)


class WorkerState:
    """Mutable state shared by the agents and timers of one worker process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keys = RedisKeys()
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"
        self.redis = aioredis.Redis.from_url(settings.redis_url, **redis_options(settings))
        self.writer = RedisWriter(self.redis, self.keys, dedupe_ttl_s=settings.dedupe_ttl_s)
        self.model: LiveModel | None = None
        self.processor = EventProcessor(
            self.writer, self.keys,
            ProcessorConfig(history_max=settings.history_max, cooc_window=settings.cooc_window,
                            list_size=settings.list_size, blend_depth=settings.blend_depth,
                            trending_half_life_s=settings.trending_half_life_s,
                            abuse=abuse_policy(settings),
                            sweep_entities=settings.sweep_entities,
                            sweep_per_batch=settings.sweep_per_batch,
                            sweep_window_s=settings.sweep_window_s),
            lambda: self.model,
        )
        self.freshness = metrics.RollingQuantiles()
        self.processed = 0
        self.ready = False
        self.started_at = time.time()
        self.metrics_port = 0
        self.last_train_attempt = 0.0
        self.training = False
        self.applied = AppliedOffsets(self.redis, self.keys)


def create_app(settings: Settings) -> tuple[faust.App, WorkerState]:
    """The Faust app for these settings, with its agents and timers attached."""
    state = WorkerState(settings)
    set_fetch_max_wait(settings.consumer_fetch_max_wait_ms)
    faust_commit_safety.install()
    datadir = settings.state_dir / "worker-data"
    datadir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
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
        # Faust's default producer batching (16 KB, no linger) on purpose: bigger batches
        # would cut the changelog's per-request cost (~20 % of the event loop in a py-spy
        # profile of the Taobao bench), but they put several records in a changelog
        # partition's last batch, where Tansu 0.6.0 answers ListOffsets "latest" low; a
        # worker recovering after a rebalance then crashed (ConsistencyError: persisted
        # offset > highwater).
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
    events_topic = app.topic(settings.topic_events, key_type=bytes, value_type=bytes,
                             key_serializer="raw", value_serializer="raw")
    catalog_topic = app.topic(settings.topic_catalog, key_type=bytes, value_type=bytes,
                              key_serializer="raw", value_serializer="raw")
    dlq_topic = app.topic(settings.topic_dlq, key_type=bytes, value_type=bytes,
                          key_serializer="raw", value_serializer="raw")
    histories = app.Table(
        HISTORY_TABLE,
        default=None,
        partitions=settings.topic_partitions,
        # Faust makes the changelog compacted; the replicas' rule comes from settings.
        extra_topic_configs=changelog_configs(settings),
        schema=faust.Schema(key_type=str, key_serializer="raw",
                            value_serializer="json"),
    )

    async def dead_letter(event: Any, reason: str) -> None:
        msg = event.message
        await dlq_topic.send(key=msg.key, value=dead_letter_value(
            msg.value, reason=reason, topic=msg.topic, partition=msg.partition,
            offset=msg.offset))
        metrics.DEAD_LETTERED.labels(msg.topic).inc()
        await retry_redis(partial(state.writer.count, dead_lettered=1), what="a counter")
        log.warning("dead-lettered %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, reason)

    @app.agent(events_topic)
    async def process_events(stream: Any) -> None:
        # The live model before the first batch, not up to one timer period later: a
        # (re)started worker must not write model-less lists for what it reads first.
        await swap_model()
        await retry_redis(partial(check_redis_current, state), what="the applied-offsets check")
        async for batch in stream.take_events(settings.stream_batch_size,
                                              within=settings.stream_batch_within_s):
            started = time.perf_counter()
            decoded: list[tuple[TopicEvent, int]] = []
            by_partition: dict[int, Any] = {}
            for event in batch:
                msg = event.message
                try:
                    events = decode_events(msg.value, partition=msg.partition, offset=msg.offset)
                except PoisonMessage as exc:
                    await dead_letter(event, str(exc))
                    continue
                by_partition[msg.partition] = event
                decoded.extend((ev, msg.partition) for ev in events)
            if decoded:
                store = TableHistoryStore(histories, by_partition)
                result = await retry_redis(partial(state.processor.process, decoded, store),
                                           what="an events batch")
                for user, forwarded in result.forwards.items():
                    if forwarded:
                        await events_topic.send(
                            key=user.encode(),
                            value=orjson.dumps(EventEnvelope(events=forwarded).model_dump(
                                exclude_none=True)))
                        metrics.FORWARDED.inc(len(forwarded))
                metrics.EVENTS_PROCESSED.inc(result.events)
                metrics.EVENTS_APPLIED.inc(result.applied)
                metrics.SWEPT.inc(result.entities_swept)
                if result.freshness_s:
                    for value in result.freshness_s:
                        metrics.FRESHNESS.observe(value)
                    state.freshness.add_many(result.freshness_s)
                state.processed += result.events
            await retry_redis(partial(state.applied.record, settings.topic_events,
                                      offset_spans(e.message for e in batch), contiguous=True),
                              what="the applied offsets")
            if state.applied.stale_reason:  # here, between batches: no write of ours races
                await retry_redis(partial(recover_lost_writes, state), what="a stale Redis")
            metrics.BATCH_SECONDS.observe(time.perf_counter() - started)

    @app.agent(catalog_topic)
    async def process_catalog(stream: Any) -> None:
        async for batch in stream.take_events(settings.stream_batch_size,
                                              within=settings.stream_batch_within_s):
            records = []
            for event in batch:
                try:
                    records.append(decode_catalog(event.message.value))
                except PoisonMessage as exc:
                    await dead_letter(event, str(exc))
            if records:
                await retry_redis(partial(state.writer.apply_catalog, records),
                                  what="a catalog batch")
                metrics.CATALOG_RECORDS.inc(len(records))
            # The catalog is compacted: offsets may skip, only the last record is a floor.
            await retry_redis(partial(state.applied.record, settings.topic_catalog,
                                      offset_spans(e.message for e in batch), contiguous=False),
                              what="the applied offsets")

    @app.timer(2.0)
    @survives_outage
    async def heartbeat() -> None:
        fields: dict[str, Any] = {
            "pid": os.getpid(), "started_at": round(state.started_at, 3),
            "heartbeat_at": round(time.time(), 3), "ready": "1" if state.ready else "0",
            "processed": state.processed, "metrics_port": state.metrics_port,
            "model_version": state.model.version if state.model else "",
            # Scripts that read lists right after a retrain wait for these (eval_api).
            "sweep_version": str(state.processor.sweep.version or ""),
            "sweep_pending": state.processor.sweep.pending,
        }
        await state.writer.heartbeat(state.worker_id, fields)
        quantiles = state.freshness.quantiles_ms()
        if quantiles:
            await state.redis.hset(state.keys.stats, mapping=dict(quantiles))

    @app.timer(2.0)
    async def consumer_lag() -> None:
        # Fetch high watermark (right on Tansu, unlike ListOffsets "latest") minus the
        # next offset to read, per assigned source partition; in-memory, no I/O.
        consumer: Any = app.consumer
        for tp in consumer.assignment():
            if tp.topic not in (settings.topic_events, settings.topic_catalog):
                continue
            try:
                high = consumer.highwater(tp)
            except Exception:  # noqa: BLE001 - not fetched yet / partition revoked
                continue
            if high is None:
                continue
            read = consumer._read_offset.get(tp)
            lag = max(0, int(high) - (int(read) + 1 if read is not None else 0))
            metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(lag)

    @app.timer(2.0)
    @survives_outage
    async def hot_swap_model() -> None:
        await swap_model()

    async def swap_model() -> None:
        version = await current_version(state.redis, state.keys)
        if version is None or (state.model and state.model.version == version):
            return
        model = await load_model(state.redis, state.keys, version,
                                 regularization=settings.als_regularization,
                                 alpha=settings.als_alpha,
                                 candidate_limit=settings.foldin_candidates)
        if model is not None:
            state.model = model
            metrics.MODEL_VERSION.clear()
            metrics.MODEL_VERSION.labels(version).set(1)
            log.info("hot-swapped model %s (%d items)", version, len(model.item_map))

    @app.timer(1.0)
    @survives_outage
    async def sweep_while_idle() -> None:
        # After a swap with no traffic (e.g. right after `streamrec train`) the batches
        # that would carry the refresh sweep never come; re-list between them instead.
        swept = await state.processor.relist_idle(TableHistoryStore(histories, {}))
        metrics.SWEPT.inc(swept)

    @app.timer(3.0)
    @survives_outage
    async def watch_for_flushed_redis() -> None:
        await rebuild_if_flushed(state)

    @app.timer(15.0)
    @survives_outage
    async def scheduled_retrain() -> None:
        await maybe_retrain(state)

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]
    async def on_partitions_revoked(sender: Any, *args: Any, **kwargs: Any) -> None:
        # Another worker may own those histories now; re-listing them from the copy left
        # here could overwrite its fresher lists.
        state.processor.sweep.forget()
        state.applied.forget()

    @app.on_rebalance_complete.connect  # type: ignore[arg-type]
    async def on_rebalance_complete(sender: Any, **kwargs: Any) -> None:
        state.ready = True
        log.info("worker %s ready (partitions assigned)", state.worker_id)

    app.streamrec_state = state  # type: ignore[attr-defined]
    return app, state


async def check_redis_current(state: WorkerState) -> None:
    """At start: wipe Redis's derived state when it has applied less of the log than the
    group committed (a Redis restored from an older snapshot; see :mod:`stream.applied`);
    the flushed-Redis watcher then rebuilds it from the log within seconds."""
    behind, committed = await behind_log(state.settings, state.redis, state.keys)
    if behind:
        await recover_stale(state.redis, state.keys, "; ".join(behind[:4]), committed)
        state.processor._t0 = None  # the trending landmark went with the wipe


async def recover_lost_writes(state: WorkerState) -> None:
    """Between batches: Redis went back under this worker; wipe it for the rebuild."""
    reason = state.applied.stale_reason or "Redis lost writes"
    await recover_stale(state.redis, state.keys, reason, dict(state.applied.last))
    state.applied.stale_reason = None
    state.processor._t0 = None  # the trending landmark went with the wipe


async def maybe_retrain(state: WorkerState) -> None:
    """Retrain when due: first as soon as enough events arrived, then every interval or
    once the data grew by ``retrain_growth`` since the live model was trained
    (``recommender.refresh.grown``), whichever comes first."""
    settings = state.settings
    if settings.retrain_interval_s <= 0 or state.training:
        return
    now = time.time()
    if state.model is None:
        processed = int(await state.redis.hget(state.keys.stats, "processed") or 0)
        due = processed >= settings.retrain_min_events and now - state.last_train_attempt > 60
    else:
        meta = state.keys.model_meta(state.model.version)
        trained_at, n_events, processed_at = await state.redis.hmget(
            meta, ["trained_at", "n_events", "processed_at"])
        due = trained_at is not None and now - float(trained_at) >= settings.retrain_interval_s
        if not due and settings.retrain_growth > 0 and processed_at is not None:
            processed = int(await state.redis.hget(state.keys.stats, "processed") or 0)
            due = grown(processed - int(processed_at), int(n_events or 0),
                        settings.retrain_growth)
    if not due:
        return
    from stream.retrain import NotEnoughData, RetrainBusy, train_and_publish

    state.training = True
    state.last_train_attempt = now
    try:
        result = await asyncio.get_running_loop().run_in_executor(
            None, lambda: train_and_publish(settings, wait_live_s=0))
        log.info("scheduled retrain published %s", result.version)
    except (NotEnoughData, RetrainBusy) as exc:
        log.info("scheduled retrain skipped: %s", exc)
    except Exception:
        log.exception("scheduled retrain failed; the current model stays live")
    finally:
        state.training = False


def run_worker(settings: Settings) -> None:
    """Run one worker process until SIGTERM/SIGINT."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    app, state = create_app(settings)
    port = settings.worker_metrics_port or free_port()
    start_http_server(port, addr="127.0.0.1")
    state.metrics_port = port
    log.info("worker metrics on http://127.0.0.1:%d/metrics", port)
    from faust.worker import Worker

    worker = Worker(app, loglevel=settings.log_level.lower(), quiet=True,
                    override_logging=False)
    worker.execute_from_commandline()
