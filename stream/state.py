"""What the agents, timers and rebalance hooks of one worker process share."""

from __future__ import annotations

import logging
import math
import os
import socket
import time
import uuid
from collections import deque

from core.ops_records import FRESHNESS_LIVE_S, REPLAY_ENDS_REFRESH_S, parse_replay_ends, replayed
from core.redis_client import async_client
from core.redis_keys import RedisKeys
from core.settings import Settings
from recommender.model import FoldInModel
from recommender.retrain_policy import catching_up
from stream import metrics
from stream.applied import AppliedOffsets, drop_passed_marks
from stream.bounds import state_bounds
from stream.live_model import current_version, load_model
from stream.processor import BatchResult, EventProcessor, ProcessorConfig
from stream.redis_writer import RedisWriter

log = logging.getLogger("streamrec.worker")

#: The heartbeat's ``events_per_s`` covers about this many seconds.
RATE_WINDOW_S = 10.0


class RateWindow:
    """Events per second over the last ``RATE_WINDOW_S`` seconds, from the processed
    counter at each heartbeat: ``streamrec status --json`` and the dashboard show the sum
    of the live workers' rates, so both show the same number."""

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        self.window_s = window_s
        self._seen: deque[tuple[float, int]] = deque()

    def rate(self, now: float, processed: int) -> float:
        """Record ``processed`` at ``now``; the rate since the oldest sample still
        within the window (0.0 until there are two samples)."""
        self._seen.append((now, processed))
        while len(self._seen) > 2 and self._seen[1][0] <= now - self.window_s:
            self._seen.popleft()
        t0, n0 = self._seen[0]
        if now - t0 <= 0 or processed < n0:
            return 0.0
        return round((processed - n0) / (now - t0), 2)


class WorkerState:
    """Mutable state shared by the agents and timers of one worker process: the Redis
    connection and writer, the batch processor, the live model and the counters the
    heartbeat publishes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.keys = RedisKeys()
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"
        self.redis = async_client(settings)
        self.writer = RedisWriter(self.redis, self.keys, dedupe_ttl_s=settings.dedupe_ttl_s,
                                  bounds=state_bounds(settings))
        self.model: FoldInModel | None = None
        self.processor = EventProcessor(self.writer, self.keys,
                                        ProcessorConfig.from_settings(settings),
                                        lambda: self.model)
        self.freshness = metrics.RollingQuantiles()
        self.processed = 0
        self.rate = RateWindow()
        self.ready = False
        #: Set when the worker shuts down: no heartbeat after its removal.
        self.stopping = False
        self.started_at = time.time()
        self.metrics_port = 0
        #: When the last scheduled retrain started (monotonic; None: none yet).
        self.last_train_attempt: float | None = None
        #: When the last scheduled retrain ended, published or not (the minimum gap;
        #: monotonic: a wall clock stepped back must not hold retrains off; None: none).
        self.last_train_end: float | None = None
        #: ``(model version, monotonic time)`` when this worker first saw a live model
        #: whose ``trained_at`` was ahead of its clock (see :meth:`trained_ago`).
        self._ahead_seen: tuple[str, float] | None = None
        self.training = False
        #: When the scheduled retrain became due while the worker was behind (it waits;
        #: monotonic).
        self.retrain_due_since: float | None = None
        self.applied = AppliedOffsets(self.redis, self.keys)
        #: Partition → events end offset at the last replay's reset (``core.ops_records``).
        self.replay_ends: dict[int, int] = {}
        #: When ``replay_ends`` was read (monotonic; -inf: read before the next batch).
        self.replay_ends_read_at = -math.inf

    def trained_ago(self, version: str, trained_at: float, now: float) -> float:
        """Seconds since the model ``version`` was trained at ``trained_at`` (wall time
        of its trainer). One ahead of ``now`` (the trainer's host clock ran ahead, or
        this one stepped back) says nothing of how long ago: it counts from when this
        worker first saw it (monotonic), not never."""
        if trained_at <= now:
            return now - trained_at
        if self._ahead_seen is None or self._ahead_seen[0] != version:
            self._ahead_seen = (version, time.monotonic())
        return time.monotonic() - self._ahead_seen[1]

    def since_train_end(self) -> float:
        """Seconds since the last scheduled retrain ended (inf: none yet; monotonic)."""
        if self.last_train_end is None:
            return math.inf
        return time.monotonic() - self.last_train_end

    def catching_up(self, now: float) -> bool:
        """Whether this worker counts as behind the log at ``now`` (monotonic): for its
        retrain and in its heartbeat (:func:`recommender.retrain_policy.catching_up`)."""
        processor = self.processor
        return catching_up(behind=processor.behind, behind_at=processor.behind_at, now=now)

    async def replayed_offsets(self, messages: list[tuple[int, int]]) -> list[bool]:
        """Whether each ``(partition, offset)`` is replayed (``core.ops_records.replayed``),
        from the replay's end offsets read again every ``REPLAY_ENDS_REFRESH_S`` seconds
        (and after a partition assignment), not per event."""
        now = time.monotonic()
        if now - self.replay_ends_read_at >= REPLAY_ENDS_REFRESH_S:
            self.replay_ends = parse_replay_ends(await self.redis.hgetall(self.keys.replay_ends))
            self.replay_ends_read_at = now
        flags = [replayed(self.replay_ends, p, o) for p, o in messages]
        # A partition read past its mark needs it no more: drop it, so a log that is lost
        # later (a memory-only Tansu restarted) does not take its new events for replayed.
        if self.replay_ends:  # read past: an offset at or beyond the mark was read
            read: dict[int, int] = {}
            for p, o in messages:
                read[p] = max(read.get(p, 0), o)
            await drop_passed_marks(self.redis, self.keys.replay_ends, self.replay_ends, read)
        return flags

    def observe_lists(self, result: BatchResult) -> None:
        """The list metrics of a batch or an idle round (``stream.agents``,
        ``stream.timers``): lists swept, rebuilt and updated at the first level, each
        re-fold delay, and each (first-level) freshness sample, in the
        Prometheus histogram and the heartbeat's rolling quantiles (samples of live traffic
        only: ``core.ops_records.FRESHNESS_LIVE_S``)."""
        metrics.SWEPT.inc(result.entities_swept)
        metrics.LISTS_REBUILT.inc(result.entities_refreshed)
        # A receive time ahead of this clock (another host's, or this one stepped back)
        # counts as no delay: a duration is never negative.
        live = [max(0.0, value) for value in result.freshness_s if value <= FRESHNESS_LIVE_S]
        if len(live) < len(result.freshness_s):
            metrics.CATCH_UP.inc(len(result.freshness_s) - len(live))
        for value in live:
            metrics.FRESHNESS.observe(value)
        self.freshness.add_many(live)
        metrics.QUICK_LISTS.inc(result.quick_lists)
        for value in result.refold_s:
            if value <= FRESHNESS_LIVE_S:
                metrics.REFOLD_DELAY.observe(max(0.0, value))

    async def swap_model(self) -> None:
        """Load the version ``model:current`` names if it is not the live one yet (the
        retrain publishes; every worker hot-swaps within a timer period)."""
        version = await current_version(self.redis, self.keys)
        if version is None or (self.model and self.model.version == version):
            return
        settings = self.settings
        model = await load_model(self.redis, self.keys, version,
                                 regularization=settings.als_regularization,
                                 alpha=settings.als_alpha,
                                 candidate_limit=settings.foldin_candidates)
        if model is not None:
            # Read before the swap: should Redis fail here, the next tick swaps again
            # (after the swap it would see this version live and never set the gauge).
            trained_at = await self.redis.hget(self.keys.model_meta(version), "trained_at")
            self.model = model
            metrics.MODEL_VERSION.clear()
            metrics.MODEL_VERSION.labels(version).set(1)
            if trained_at is not None:  # an alert on the model's age: time() minus this
                metrics.MODEL_TRAINED_AT.set(float(trained_at))
            log.info("hot-swapped model %s (%d items)", version, len(model.item_map))
