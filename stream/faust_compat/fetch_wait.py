"""The fetch long-poll wait of Faust's consumer, which Faust does not expose.

Faust builds its aiokafka consumer with ``fetch_max_wait_ms=1500`` fixed. Apache Kafka
answers a waiting fetch as soon as data arrives, but Tansu 0.6.0 holds it for the full
wait (measured here: median delivery latency 1232 ms at 1500, 232 ms at 500, 36 ms at
100, 16 ms at 20). Freshness is a product feature, so the worker sets its own wait; the
cost on an idle partition is one small fetch per wait period.
"""

from __future__ import annotations

import functools
from typing import Any

from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

_original_create = AIOKafkaConsumerThread._create_worker_consumer
_fetch_wait_ms: int | None = None


@functools.wraps(_original_create)
def _create_worker_consumer(self: Any, transport: Any) -> Any:
    consumer = _original_create(self, transport)
    if _fetch_wait_ms is not None:
        # Read by AIOKafkaConsumer.start() when it builds its fetcher.
        consumer._fetch_max_wait_ms = _fetch_wait_ms
    return consumer


def set_fetch_max_wait(ms: int) -> None:
    """Make every Faust worker consumer created from now on wait at most ``ms``
    (idempotent: the original method is wrapped once)."""
    global _fetch_wait_ms
    _fetch_wait_ms = int(ms)
    AIOKafkaConsumerThread._create_worker_consumer = (  # type: ignore[method-assign]
        _create_worker_consumer
    )
