"""The worker's timers: heartbeat, broker watch, lag, model hot swap, idle sweep, flush
watch, retrain, history expiry, old anonymous-id sets' expiry, pending forget sweeps.

Every timer that touches Redis or Kafka is wrapped in :func:`stream.rebuild.survives_outage`:
an exception in a Faust timer crashes the worker, and heartbeats must not stop after an
outage.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

import faust
import orjson

from core.kafka_tools import high_watermarks
from core.worker_beats import STALE_AFTER_S
from recommender.retrain_policy import postponed, retrain_due
from stream import metrics
from stream.anons_ttl import ensure_anons_ttl
from stream.backlog import partition_lags
from stream.broker_watch import BrokerOutageNotice, unreachable
from stream.history_expiry import expire_owned
from stream.history_store import TableHistoryStore
from stream.rebalance import resume_forget_sweeps
from stream.rebuild import (
    OUTAGE_ERRORS,
    RedisOutageNotice,
    rebuild_if_flushed,
    survives_outage,
)
from stream.state import WorkerState

log = logging.getLogger("streamrec.worker")


def register_timers(app: faust.App, state: WorkerState, table: Any) -> None:
    """Attach every timer to ``app``."""
    settings = state.settings

    outage = RedisOutageNotice(settings.redis_url)

    @app.timer(2.0)
    async def heartbeat() -> None:
        try:
            await publish_heartbeat(state, owned_partitions(app.consumer,
                                                            settings.topic_events))
        except OUTAGE_ERRORS as exc:  # only Redis: an outage skips the beat, said once
            outage.failed(exc)
        else:
            outage.answered()

    broker = BrokerOutageNotice(settings.kafka_bootstrap)

    @app.timer(2.0)
    @survives_outage
    async def watch_broker() -> None:
        why = await unreachable(settings.kafka_bootstrap)
        if why is None:
            broker.answered()
        else:
            broker.failed(why)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]
    async def heartbeat_gone(sender: Any, **kwargs: Any) -> None:
        # A clean stop (SIGTERM, a rolling restart) leaves no heartbeat claiming its
        # partitions beside the worker that took them over.
        state.stopping = True
        try:
            await state.writer.heartbeat_gone(state.worker_id)
        except Exception as exc:  # noqa: BLE001 - Redis away: the beat expires in 15 s
            log.warning("could not remove the heartbeat of %s: %s", state.worker_id, exc)

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
        # And after a burst, the lists that waited (coalesced) while the worker was behind.
        state.observe_lists(await state.processor.relist_idle(TableHistoryStore(table, {})))

    @app.timer(3.0)
    @survives_outage
    async def watch_for_flushed_redis() -> None:
        await rebuild_if_flushed(state)

    @app.timer(15.0)
    @survives_outage
    async def scheduled_retrain() -> None:
        await maybe_retrain(state)

    @app.timer(settings.history_sweep_interval_s)
    async def expire_histories() -> None:
        await expire_owned(table, app, settings.topic_events, state.processor.config.bounds,
                           settings.topic_partitions, state.processor.clocks)

    @app.timer(60.0)
    @survives_outage
    async def bound_old_anons() -> None:  # an older version's sets (stream.anons_ttl)
        await ensure_anons_ttl(state.redis, state.keys, state.processor.config.bounds.links_ttl_s)

    @app.timer(10.0)
    @survives_outage
    async def forget_sweeps() -> None:
        # The rebalance hook takes them up; this, those it could not (Redis was away),
        # and a sweep that Redis stopped.
        await resume_forget_sweeps(state, app.consumer)


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
    readiness check), and the freshness quantiles; none once the worker is stopping."""
    if state.stopping:
        return
    now = time.time()
    fields: dict[str, Any] = {
        "partitions": partitions,
        "pid": os.getpid(), "started_at": round(state.started_at, 3),
        "heartbeat_at": round(now, 3), "ready": "1" if state.ready else "0",
        "processed": state.processed, "metrics_port": state.metrics_port,
        "events_per_s": state.rate.rate(now, state.processed),
        "model_version": state.model.version if state.model else "",
        # Scripts that read lists right after a retrain wait for these (eval_api).
        "sweep_version": str(state.processor.sweep.version or ""),
        "sweep_pending": state.processor.sweep.pending,
        # Lists waiting to be rebuilt once per entity (coalesced while behind).
        "lists_waiting": state.processor.pending,
        # A step found a backlog lately: the group's retrain waits (maybe_retrain).
        "behind": "1" if state.catching_up(time.monotonic()) else "0",
    }
    quantiles = state.freshness.quantiles_ms()
    histogram = state.freshness.histogram_ms() if quantiles else {}
    if quantiles:  # this worker's own, beside the shared view: status merges the workers'
        fields.update(quantiles, freshness_histogram=orjson.dumps(histogram).decode())
    await state.writer.heartbeat(state.worker_id, fields)
    if quantiles:
        await state.writer.publish_freshness(quantiles, histogram)


def report_lag(consumer: Any, topics: tuple[str, ...]) -> None:
    """Set the lag gauge of every assigned source partition: the fetch high watermark
    (right on Tansu, unlike ListOffsets "latest") minus the next offset to read;
    in-memory, no I/O (:func:`stream.backlog.partition_lags`). Partitions no longer
    assigned (a rebalance gave them to another worker) lose their series."""
    held = {(tp.topic, str(tp.partition)) for tp in consumer.assignment()
            if tp.topic in topics}
    lags = {(tp.topic, str(tp.partition)): lag for tp, lag in partition_lags(consumer, topics)}
    metrics.set_consumer_lag(lags, held)


async def maybe_retrain(state: WorkerState) -> None:
    """Retrain when due, in a niced process of its own (:mod:`stream.trainer`): first as
    soon as enough events were processed, then once the log's end offsets grew by
    ``retrain_growth`` since the live model's retrain read them, never sooner than
    ``retrain_min_gap_s`` after it or after the end of the last attempt, whatever it came
    to (:func:`recommender.retrain_policy.retrain_due`); a due retrain waits while this
    worker or another live one of the group is behind
    (:func:`~recommender.retrain_policy.postponed`)."""
    settings = state.settings
    if settings.retrain_interval_s <= 0 or state.training:
        return
    now = time.time()
    # The worker's own intervals (a minute between first-model attempts, the cap on
    # postponing) on the monotonic clock: a wall clock stepped back held them off.
    mono = time.monotonic()
    if state.model is None:
        processed = int(await state.redis.hget(state.keys.stats, "processed") or 0)
        due = processed >= settings.retrain_min_events and (
            state.last_train_attempt is None or mono - state.last_train_attempt > 60)
    else:
        due = await _grown_since_retrain(state, now)
    if not due:
        state.retrain_due_since = None
        return
    if state.retrain_due_since is None:
        state.retrain_due_since = mono
    behind = state.catching_up(mono) or await state.writer.any_other_behind(
        state.worker_id, STALE_AFTER_S)
    if postponed(behind=behind, due_since=state.retrain_due_since, now=mono):
        return  # the group catches up first (recommender.retrain_policy.postponed)
    from stream.trainer import RetrainStopped, run_retrain_process

    log.info("scheduled retrain starts (%s)", "first model" if state.model is None
             else f"the log grew since {state.model.version}")
    state.retrain_due_since = None
    state.training = True
    state.last_train_attempt = mono
    try:
        result = await run_retrain_process(settings)
        if result is None:
            log.info("scheduled retrain skipped (too few events, or another one runs)")
        else:
            log.info("scheduled retrain published %s in %.1fs", result["version"],
                     result["seconds"])
    except RetrainStopped as stopped:  # the worker is being stopped with its group
        log.info("scheduled retrain not finished (%s); the current model stays live",
                 stopped)
    except Exception:
        log.exception("scheduled retrain failed; the current model stays live")
    finally:
        state.training = False
        state.last_train_end = time.monotonic()


async def _grown_since_retrain(state: WorkerState, now: float) -> bool:
    """Whether the log grew enough since the live model's retrain (and long enough ago)."""
    assert state.model is not None
    settings = state.settings
    trained_at, raw_ends = await state.redis.hmget(
        state.keys.model_meta(state.model.version), ["trained_at", "log_ends"])
    if trained_at is None:
        return False
    # Both as wall times of this clock (retrain_due's terms), measured clock-step safe.
    trained = now - state.trained_ago(state.model.version, float(trained_at), now)
    attempted = now - state.since_train_end()
    if now - max(trained, attempted) < settings.retrain_min_gap_s:
        return False
    # A model trained before end offsets were recorded counts as trained on nothing.
    trained_on = {int(p): int(e) for p, e in orjson.loads(raw_ends or b"{}").items()}
    ends = await asyncio.get_running_loop().run_in_executor(
        None, lambda: high_watermarks(settings, settings.topic_events))
    return retrain_due(ends=ends, trained=trained_on, trained_at=trained, now=now,
                       growth=settings.retrain_growth, min_gap_s=settings.retrain_min_gap_s,
                       interval_s=settings.retrain_interval_s,
                       attempted_at=max(0.0, attempted))
