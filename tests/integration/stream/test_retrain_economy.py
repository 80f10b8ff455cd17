"""The worker's scheduled retrain on a real broker and Redis: it starts only once the
events log's end offsets grew by the growth share since the last retrain read them,
however many events the worker processed meanwhile (issue 14: a backlog was retrained
three times on the same log), and it runs in a process of its own."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
import redis
from kafka import KafkaProducer
from kafka.errors import KafkaError

from core import kafka_tools
from core.net import free_port
from core.redis_keys import RedisKeys
from core.settings import Settings
from stream.rebuild import survives_outage
from stream.retrain import train_and_publish
from stream.state import WorkerState
from stream.timers import maybe_retrain

pytestmark = [pytest.mark.integration, pytest.mark.broker]
K = RedisKeys()


def produce(settings: Settings, start: int, n: int) -> None:
    """``n`` one-event messages (users and items cycling), ids from ``start``."""
    producer = KafkaProducer(**kafka_tools.client_options(settings), acks="all")
    now = time.time()
    for i in range(start, start + n):
        user = f"u{i % 12}"
        value = orjson.dumps({"v": 1, "events": [{
            "event_id": f"e{i}", "type": "view", "user_id": user, "item_id": f"i{i % 7}",
            "ts": now, "received_at": now}]})
        producer.send(settings.topic_events, key=user.encode(), value=value)
    producer.flush()
    producer.close()


def trained_log(settings: Settings, *, growth: float = 0.1, min_gap_s: float = 0.0,
                events: int = 20) -> tuple[Settings, Any]:
    """Settings whose scheduled retrain (every 600 s) waits for ``growth`` of the log and
    ``min_gap_s``, a log of ``events`` messages, and the model trained on it."""
    s = settings.model_copy(update={"retrain_interval_s": 600.0, "retrain_growth": growth,
                                    "retrain_min_gap_s": min_gap_s, "retrain_min_events": 1})
    kafka_tools.create_topics(s)
    produce(s, 0, events)
    return s, train_and_publish(s, wait_live_s=0)


async def test_no_scheduled_retrain_until_the_log_grew_by_the_growth_share(
        settings: Settings) -> None:
    s, first = trained_log(settings, growth=0.5, events=40)
    client = redis.Redis.from_url(s.redis_url)
    log_ends = orjson.loads(client.hget(K.model_meta(first.version), "log_ends") or b"{}")
    assert sum(log_ends.values()) == 40

    state = WorkerState(s)
    try:
        await state.swap_model()
        assert state.model is not None and state.model.version == first.version
        # The model's age for alerts: time() minus the gauge.
        from stream import metrics
        trained_at = float(client.hget(K.model_meta(first.version), "trained_at"))
        assert metrics.MODEL_TRAINED_AT._value.get() == trained_at
        # The worker catching up on a backlog the retrain had already read: the counter
        # the old trigger compared grows far beyond the share, the log does not.
        client.hset(K.stats, "processed", 10_000)
        await maybe_retrain(state)
        assert client.get(K.model_current) == first.version.encode()

        produce(s, 40, 19)  # 19 of the 20 messages the share asks for
        state.last_train_attempt = 0.0
        await maybe_retrain(state)
        assert client.get(K.model_current) == first.version.encode()

        produce(s, 59, 1)
        await maybe_retrain(state)
        second: Any = client.get(K.model_current)
        assert second is not None and second != first.version.encode()
        ends = orjson.loads(client.hget(K.model_meta(second.decode()), "log_ends") or b"{}")
        assert sum(ends.values()) == 60
    finally:
        await state.redis.aclose()
        client.close()


async def test_growth_retrains_keep_the_minimum_gap(settings: Settings) -> None:
    s, first = trained_log(settings, min_gap_s=3600.0)
    produce(s, 20, 20)  # doubled: far past the share, but within the gap
    state = WorkerState(s)
    client = redis.Redis.from_url(s.redis_url)
    try:
        await state.swap_model()
        await maybe_retrain(state)
        assert client.get(K.model_current) == first.version.encode()
    finally:
        await state.redis.aclose()
        client.close()


async def test_a_due_retrain_waits_until_the_worker_caught_up(settings: Settings) -> None:
    s, first = trained_log(settings)
    produce(s, 20, 20)
    state = WorkerState(s)
    client = redis.Redis.from_url(s.redis_url)
    try:
        await state.swap_model()
        state.processor.behind = True  # the last step found a backlog
        await maybe_retrain(state)
        assert client.get(K.model_current) == first.version.encode()
        state.processor.behind = False
        await maybe_retrain(state)
        assert client.get(K.model_current) != first.version.encode()
    finally:
        await state.redis.aclose()
        client.close()


async def test_a_due_retrain_waits_while_another_worker_is_behind(
        settings: Settings) -> None:
    # Two workers split the partitions: the first to drain its half must not start a
    # retrain beside the other's catch-up (it took a core from it in the burst).
    s, first = trained_log(settings)
    produce(s, 20, 20)
    state = WorkerState(s)
    client = redis.Redis.from_url(s.redis_url)
    other = "worker-other"
    try:
        await state.swap_model()
        client.hset(K.worker(other), mapping={"behind": "1", "heartbeat_at": time.time()})
        client.zadd(K.worker_registry, {other: time.time()})
        await maybe_retrain(state)
        assert client.get(K.model_current) == first.version.encode()
        client.hset(K.worker(other), "behind", "0")  # it caught up
        await maybe_retrain(state)
        assert client.get(K.model_current) != first.version.encode()
    finally:
        await state.redis.aclose()
        client.close()


async def test_the_retrain_timer_skips_a_tick_while_the_broker_is_away(
        settings: Settings) -> None:
    # A live stack on Apache Kafka lost its worker for good: after the broker stalled,
    # the timer's end offset read raised MetadataEmptyBrokerList, and an exception in a
    # Faust timer crashes the worker. Here the broker is gone (nothing on the port).
    s, first = trained_log(settings)
    away = s.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{free_port()}"})
    state = WorkerState(away)
    client = redis.Redis.from_url(s.redis_url)
    try:
        await state.swap_model()
        assert state.model is not None and state.model.version == first.version
        with pytest.raises(KafkaError):
            await maybe_retrain(state)  # what the timer meets
        await survives_outage(lambda: maybe_retrain(state))()  # the timer: one tick skipped
        assert client.get(K.model_current) == first.version.encode()
        assert not state.training
    finally:
        await state.redis.aclose()
        client.close()


async def test_a_retrain_that_published_nothing_keeps_the_minimum_gap_too(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    # The gap counted from the live model only: a scheduled retrain that ended without a
    # model (too few usable events here; a crash alike) started again at the next 15 s
    # tick, reading the whole log each time, on a log that had not grown since.
    import stream.trainer

    s, first = trained_log(settings, min_gap_s=3600.0)
    produce(s, 20, 20)
    client = redis.Redis.from_url(s.redis_url)
    client.hset(K.model_meta(first.version), "trained_at", repr(time.time() - 7200))
    started: list[float] = []
    real = stream.trainer.run_retrain_process

    async def counted(child: Settings) -> Any:
        started.append(time.time())
        return await real(child)

    monkeypatch.setattr(stream.trainer, "run_retrain_process", counted)
    state = WorkerState(s.model_copy(update={"retrain_min_events": 10_000}))
    try:
        await state.swap_model()
        await maybe_retrain(state)  # due (an hour past the gap, grown): skipped, too few
        assert len(started) == 1
        await maybe_retrain(state)  # the next tick: within the gap of that attempt
        assert len(started) == 1
        assert client.get(K.model_current) == first.version.encode()
    finally:
        await state.redis.aclose()
        client.close()


async def test_a_trained_at_ahead_of_the_clock_does_not_stop_retrains(
        settings: Settings) -> None:
    """The live model's ``trained_at`` a day ahead of the worker's clock (its trainer's
    host ran ahead, or this clock stepped back a day): ``now - trained_at`` stayed under
    the minimum gap, so no scheduled retrain ran for a day. The gap is then counted from
    when the worker first saw that model."""
    s, first = trained_log(settings, min_gap_s=1.0)
    client = redis.Redis.from_url(s.redis_url)
    client.hset(K.model_meta(first.version), "trained_at", repr(time.time() + 86400))
    produce(s, 20, 20)
    state = WorkerState(s)
    try:
        await state.swap_model()
        await maybe_retrain(state)  # within the gap of first seeing it
        assert client.get(K.model_current) == first.version.encode()
        time.sleep(1.2)
        await maybe_retrain(state)
        assert client.get(K.model_current) != first.version.encode()
    finally:
        await state.redis.aclose()
        client.close()


class SteppedClock:
    """``stream.timers``' view of time: a wall clock that can step, a monotonic one that
    only moves forward."""

    def __init__(self) -> None:
        self.wall, self.mono = time.time(), time.monotonic()

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def passes(self, seconds: float, *, wall_step: float = 0.0) -> None:
        """``seconds`` go by while the wall clock is also set by ``wall_step``."""
        self.mono += seconds
        self.wall += seconds + wall_step


def stepped_worker(settings: Settings, monkeypatch: pytest.MonkeyPatch
                   ) -> tuple[Settings, SteppedClock, list[float]]:
    """A trained log's settings, the worker's clocks replaced by a :class:`SteppedClock`,
    and the monotonic times at which it started a retrain process (each one a stand-in
    that returns at once: skipped, as with too few events)."""
    import stream.state
    import stream.timers
    import stream.trainer

    s, _ = trained_log(settings)
    attempts: list[float] = []
    clock = SteppedClock()

    async def attempt(_: Settings) -> None:
        attempts.append(clock.mono)

    monkeypatch.setattr(stream.timers, "time", clock)
    monkeypatch.setattr(stream.state, "time", clock)
    monkeypatch.setattr(stream.trainer, "run_retrain_process", attempt)
    return s, clock, attempts


async def test_a_clock_stepped_back_holds_no_first_retrain_nor_a_postponed_one(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker's wall clock stepped back an hour (NTP, a VM restored): the minute
    between first-model attempts and the 10-minute cap on postponing a due retrain were
    wall times, so neither came for an hour more. Both are on the monotonic clock."""
    s, clock, attempts = stepped_worker(settings, monkeypatch)
    client = redis.Redis.from_url(s.redis_url)
    client.hset(K.stats, "processed", 100)
    state = WorkerState(s)
    try:
        await maybe_retrain(state)  # no model yet: the first attempt
        assert len(attempts) == 1
        clock.passes(61, wall_step=-3600)
        await maybe_retrain(state)  # a minute later: the next attempt
        assert len(attempts) == 2

        await state.swap_model()  # now a model and a grown log: due, but behind
        produce(s, 20, 20)
        state.processor.behind = True
        clock.passes(30)
        await maybe_retrain(state)
        assert len(attempts) == 2  # postponed while behind
        clock.passes(601, wall_step=-3600)
        await maybe_retrain(state)  # due for over 10 minutes: no longer postponed
        assert len(attempts) == 3
    finally:
        await state.redis.aclose()
        client.close()


async def test_the_first_retrain_waits_until_the_worker_caught_up_for_a_while(
        settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """A burst's last steps find no backlog (what is left fits in a step) while their
    batch still runs: the first retrain, due since the burst's first events, starts only
    ``CATCH_UP_SETTLE_S`` after the last step that found one, not beside that tail."""
    from recommender.retrain_policy import CATCH_UP_SETTLE_S

    s, clock, attempts = stepped_worker(settings, monkeypatch)
    client = redis.Redis.from_url(s.redis_url)
    client.hset(K.stats, "processed", 100)
    state = WorkerState(s)
    try:
        state.processor.behind, state.processor.behind_at = False, clock.mono
        clock.passes(CATCH_UP_SETTLE_S - 1)
        await maybe_retrain(state)
        assert attempts == []  # the last backlog a moment ago: still catching up
        clock.passes(1)
        await maybe_retrain(state)
        assert len(attempts) == 1
    finally:
        await state.redis.aclose()
        client.close()
