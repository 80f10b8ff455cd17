"""The API's Kafka producer: acknowledged writes only, never blocking the event loop.

``EventProducer.start`` returns at once and connects in the background, retrying with
backoff, so the API process comes up (and serves recommendations) while the broker is
down. ``send_all`` waits for Kafka's acknowledgement (``acks="all"``) of every message
of a request, concurrently, for at most ``settings.produce_timeout_s``; a broker that is
down or too slow becomes :class:`api.errors.BrokerUnavailable` (HTTP 503, Retry-After).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError

from api.errors import BrokerUnavailable, PayloadTooLarge
from core.connections import kafka_refusal
from core.kafka_tools import security_options
from core.outage_notice import OutageNotice
from core.settings import Settings

log = logging.getLogger("streamrec.api")

#: Batching delay: long enough to group a request's concurrent sends, short for latency.
LINGER_MS = 3
#: Reconnect backoff bounds (seconds).
BACKOFF_MIN_S, BACKOFF_MAX_S = 0.2, 5.0
#: Failed connects between two handshake checks for a refused login (the first one too).
REFUSAL_EVERY = 5

#: (key, value, partition); partition None = the default partitioner picks it by key.
Message = tuple[bytes, bytes, int | None]


def producer_options(settings: Settings) -> dict[str, Any]:
    """aiokafka producer options from settings (security included)."""
    opts: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap.split(","),
        "acks": "all",
        "linger_ms": LINGER_MS,
        "enable_idempotence": settings.kafka_idempotent_producer,
        "request_timeout_ms": max(1000, int(settings.produce_timeout_s * 1000)),
        "retry_backoff_ms": 100,
        "client_id": f"{settings.app_id}-api",
        **security_options(settings),
    }
    return opts


class EventProducer:
    """One aiokafka producer per API process, connected lazily in the background."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._timeout_s = settings.produce_timeout_s
        self._producer: AIOKafkaProducer | None = None
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        #: Why Kafka refuses this process's TLS/SASL handshake, while it does (one line
        #: without the password, :func:`core.connections.kafka_refusal`); else None.
        self.refusal: str | None = None
        #: Writes failing: said once per outage, with its end (core.outage_notice).
        self._outage = OutageNotice(
            log, settings.kafka_bootstrap,
            "Kafka at %s does not take writes (%s): tracking, catalog and forget writes are "
            "answered 503 with Retry-After (not acknowledged, yet one may still land; "
            "clients retry, and a retried event is counted once by its event id), "
            "recommendations are still served; the producer reconnects by itself; check "
            "the brokers",
            "Kafka at %s acknowledges writes again after %.0fs")

    @property
    def connected(self) -> bool:
        """True once the producer bootstrapped against the cluster."""
        return self._producer is not None

    @property
    def retry_after_s(self) -> int:
        """What a 503 tells the client to wait before retrying."""
        return max(1, math.ceil(min(self._timeout_s, BACKOFF_MAX_S)))

    async def start(self) -> None:
        """Begin connecting in the background; returns immediately."""
        if self._task is None:
            self._task = asyncio.create_task(self._connect(), name="kafka-producer-connect")

    async def _connect(self) -> None:
        delay = BACKOFF_MIN_S
        failures = 0
        while not self._closing:
            producer = AIOKafkaProducer(**producer_options(self._settings))
            try:
                await producer.start()
            except (KafkaError, OSError, TimeoutError) as exc:
                failures += 1
                if failures == 1 or failures % REFUSAL_EVERY == 0:
                    # A refused login or certificate is configuration, not an outage:
                    # ask once what the handshake says (/readyz and the log name it).
                    self.refusal = await self._refusal()
                if failures == 1 or failures % 20 == 0:
                    log.warning(
                        "%s; retrying in the background", self.refusal or
                        f"Kafka at {self._settings.kafka_bootstrap} unreachable ({exc})",
                    )
                with contextlib.suppress(Exception):
                    await producer.stop()
                await asyncio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)
                continue
            self._producer = producer
            self.refusal = None
            self._ready.set()
            log.info("Kafka producer connected to %s", self._settings.kafka_bootstrap)
            return

    async def _refusal(self) -> str | None:
        """The handshake's refusal now (None: accepted, PLAINTEXT, or no answer)."""
        try:
            return await kafka_refusal(self._settings, timeout_s=min(self._timeout_s, 5.0))
        except Exception:  # noqa: BLE001 - a diagnosis must never stop the connect loop
            return None

    async def stop(self) -> None:
        """Flush what is in flight (bounded) and close."""
        self._closing = True
        if self._task is not None and not self._task.done():
            self._task.cancel()
            # aiokafka's start() can swallow a cancellation that lands mid-bootstrap, so
            # the task may never finish: wait a bounded time, then abandon it.
            done, _ = await asyncio.wait({self._task}, timeout=self._timeout_s)
            if not done:
                log.warning("Kafka connect task did not stop; abandoning it")
        if self._producer is not None:
            try:
                await asyncio.wait_for(self._producer.stop(), timeout=self._timeout_s + 5)
            except (TimeoutError, KafkaError, OSError) as exc:
                log.warning("Kafka producer did not close cleanly: %s", exc)
            self._producer = None

    async def partition_count(self, topic: str) -> int:
        """How many partitions ``topic`` has (cached cluster metadata; fetched if unknown).

        Raises ``BrokerUnavailable`` like :meth:`send_all` when the broker cannot say.
        """
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._ready.wait()
                producer = self._producer
                assert producer is not None
                partitions = await producer.partitions_for(topic)
        except (TimeoutError, KafkaError) as exc:
            raise BrokerUnavailable(
                f"Kafka did not describe topic {topic!r}; retry later",
                retry_after_s=self.retry_after_s,
            ) from exc
        return max(1, len(partitions))

    async def send_all(self, topic: str, messages: Sequence[Message]) -> None:
        """Produce every message and return only when Kafka acknowledged all of them.

        Raises ``BrokerUnavailable`` when the broker is unreachable, rejects a message,
        or does not acknowledge within ``produce_timeout_s``; ``PayloadTooLarge`` (413,
        never a 503 the client would retry forever) when a message is over the producer's
        or the broker's size limit.
        """
        if not messages:
            return
        try:
            async with asyncio.timeout(self._timeout_s):
                await self._ready.wait()
                producer = self._producer
                assert producer is not None
                results = await asyncio.gather(
                    *(producer.send_and_wait(topic, value, key=key, partition=part)
                      for key, value, part in messages),
                    return_exceptions=True,
                )
        except TimeoutError as exc:
            self._writes_failing(f"no acknowledgement within {self._timeout_s:g}s")
            raise BrokerUnavailable(
                f"Kafka did not acknowledge within {self._timeout_s:g}s; retry later",
                retry_after_s=self.retry_after_s,
            ) from exc
        failed = [r for r in results if isinstance(r, BaseException)]
        if not failed:
            self._writes_acknowledged()
            return
        too_large = [r for r in failed if isinstance(r, MessageSizeTooLargeError)]
        if too_large:
            raise PayloadTooLarge(
                "an event is larger than a Kafka message may be; send it with a smaller "
                "context or fewer item_ids") from too_large[0]
        log.warning("Kafka rejected %d of %d messages: %r", len(failed), len(messages),
                    failed[0])
        self._writes_failing(type(failed[0]).__name__)
        raise BrokerUnavailable(
            f"Kafka did not accept the write ({type(failed[0]).__name__}); retry later",
            retry_after_s=self.retry_after_s,
        ) from failed[0]

    def _writes_failing(self, why: str) -> None:
        """Say once per outage that writes fail and what the API does about it: during
        a broker outage api.log held only aiokafka's ``Unable connect to node with id
        111:`` lines, which say neither that clients get 503s nor when it ended."""
        self._outage.failed(why)

    def _writes_acknowledged(self) -> None:
        """End an outage :meth:`_writes_failing` logged, with how long it lasted."""
        self._outage.answered()

    async def ping(self, timeout_s: float = 2.0) -> bool:
        """True when the cluster answers a metadata request now."""
        producer = self._producer
        if producer is None:
            return False
        try:
            await asyncio.wait_for(producer.client.fetch_all_metadata(), timeout=timeout_s)
        except (KafkaError, OSError, TimeoutError):
            return False
        return True
