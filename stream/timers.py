"""The worker's timers: heartbeat, lag, model hot swap, idle sweep, flush watch, retrain.

Every timer that touches Redis is wrapped in :func:`stream.rebuild.survives_outage`: an
exception ends a Faust timer for good, and heartbeats must not stop after an outage.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import faust

from recommender.refresh import grown
from stream import metrics
from stream.faust_compat.internals import read_offset
from stream.history_store import TableHistoryStore
from stream.rebuild import rebuild_if_flushed, survives_outage
from stream.state import WorkerState

log = logging.getLogger("streamrec.worker")


def register_timers(app: faust.App, state: WorkerState, table: Any) -> None:
    """Attach every timer to ``app``."""
    settings = state.settings

    @app.timer(2.0)
    @survives_outage
    async def heartbeat() -> None:
        await publish_heartbeat(state, owned_partitions(app.consumer, settings.topic_events))

    @app.timer(2.0)
    async def consumer_lag() -> None:
        report_lag(app.consumer, (settings.topic_events, settings.topic_catalog))

    @app.timer(2.0)
    @survives_outage
    async def hot_swap_model() -> None:
        await state.swap_model()

    @app.timer(1.0)
    @survives_outage
    async def sweep_while_idle() -> None:
        # After a swap with no traffic (e.g. right after `streamrec train`) the batches
        # that would carry the refresh sweep never come; re-list between them instead.
        swept = await state.processor.relist_idle(TableHistoryStore(table, {}))
        metrics.SWEPT.inc(swept)

    @app.timer(3.0)
    @survives_outage
    async def watch_for_flushed_redis() -> None:
        await rebuild_if_flushed(state)

    @app.timer(15.0)
    @survives_outage
    async def scheduled_retrain() -> None:
        await maybe_retrain(state)


def owned_partitions(consumer: Any, topic: str) -> str:
    """The partitions of ``topic`` assigned to this worker now, as ``"0,2"`` (workers
    split them; ``streamrec status`` shows who has which)."""
    try:
        assigned = consumer.assignment()
    except Exception:  # noqa: BLE001 - no consumer yet
        return ""
    return ",".join(str(p) for p in sorted(tp.partition for tp in assigned if tp.topic == topic))


async def publish_heartbeat(state: WorkerState, partitions: str = "") -> None:
    """This worker's liveness and progress in Redis (``streamrec status``, the stack's
    readiness check), and the freshness quantiles."""
    fields: dict[str, Any] = {
        "partitions": partitions,
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
        await state.writer.publish_freshness(quantiles, state.freshness.histogram_ms())


def report_lag(consumer: Any, topics: tuple[str, ...]) -> None:
    """Set the lag gauge of every assigned source partition: the fetch high watermark
    (right on Tansu, unlike ListOffsets "latest") minus the next offset to read;
    in-memory, no I/O."""
    for tp in consumer.assignment():
        if tp.topic not in topics:
            continue
        try:
            high = consumer.highwater(tp)
        except Exception:  # noqa: BLE001 - not fetched yet / partition revoked
            continue
        if high is None:
            continue
        read = read_offset(consumer, tp)
        lag = max(0, int(high) - (read + 1 if read is not None else 0))
        metrics.CONSUMER_LAG.labels(tp.topic, str(tp.partition)).set(lag)


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
    # Imported when first due: training pulls in implicit, which a worker without
    # scheduled retrains never needs.
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
