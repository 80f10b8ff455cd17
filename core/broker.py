"""Which Kafka-protocol broker answers: Apache Kafka or Tansu, decided here and only here.

streamrec runs on both. Tansu (the embedded default) lacks a few of Kafka's mechanisms,
and the code works around them on Tansu only: end offsets from the fetch high watermark
(Tansu answers ListOffsets "latest" too low), offsets by time from a binary search over
record timestamps (Tansu answers ListOffsets by time with 0), and an emptied table
changelog by tombstones (Tansu neither compacts nor deletes). On Apache Kafka the same
jobs use ListOffsets, ``offsets_for_times`` and topic deletion plus compaction.

The kind comes from the broker's ApiVersions answer: Apache Kafka has served
OffsetForLeaderEpoch (API key 23) since 0.11, Tansu 0.6 does not serve it. Brokers that
are built to behave like Kafka (MSK, Confluent, Redpanda) answer it too and get Kafka's
mechanisms. The answer is cached per bootstrap address for a minute.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from core.settings import Settings

APACHE_KAFKA = "apache-kafka"
TANSU = "tansu"
#: ApiVersions key of OffsetForLeaderEpoch: every Apache Kafka broker since 0.11 has it.
OFFSET_FOR_LEADER_EPOCH = 23
CACHE_S = 60.0
#: The worker's fetch wait on Tansu and on Apache Kafka (:func:`fetch_wait_ms`).
TANSU_FETCH_WAIT_MS = 20
KAFKA_FETCH_WAIT_MS = 500

_cache: dict[str, tuple[float, BrokerInfo]] = {}
_lock = threading.Lock()


@dataclass(frozen=True)
class BrokerInfo:
    """What answers at the bootstrap address: ``kind`` (``apache-kafka`` or ``tansu``),
    ``version`` (the protocol level the client infers, e.g. ``"4.3"``; None when unknown)
    and ``brokers`` (live brokers in the cluster's metadata)."""

    kind: str
    version: str | None
    brokers: int

    @property
    def is_tansu(self) -> bool:
        """True when Tansu's workarounds apply."""
        return self.kind == TANSU

    def to_dict(self) -> dict[str, Any]:
        """The ``broker`` object of ``streamrec status --json``."""
        return {"kind": self.kind, "version": self.version, "brokers": self.brokers}


def kind_from_api_keys(api_keys: set[int]) -> str:
    """``apache-kafka`` or ``tansu`` from the API keys a broker's ApiVersions lists."""
    return APACHE_KAFKA if OFFSET_FOR_LEADER_EPOCH in api_keys else TANSU


def _probe(settings: Settings) -> BrokerInfo:
    from kafka import KafkaAdminClient
    from kafka.protocol.broker_version_data import infer_broker_version_from_api_versions

    from core.kafka_tools import client_options

    admin = KafkaAdminClient(**client_options(settings), request_timeout_ms=10000)
    try:
        api_versions = admin.api_versions()
        kind = kind_from_api_keys({int(key) for key in api_versions})
        # The protocol level the client infers from the same answer, e.g. (4, 3).
        inferred = infer_broker_version_from_api_versions(
            {int(key): span for key, span in api_versions.items()})
        version = ".".join(str(part) for part in inferred) if inferred else None
        # A broker that stopped heartbeating is listed fenced until it comes back.
        brokers = sum(1 for b in admin.describe_cluster().get("brokers") or []
                      if not b.get("is_fenced"))
    finally:
        admin.close()
    return BrokerInfo(kind, version if kind == APACHE_KAFKA else None, brokers)


def describe_broker(settings: Settings, *, fresh: bool = False) -> BrokerInfo:
    """The broker at ``settings.kafka_bootstrap`` (cached for :data:`CACHE_S` seconds;
    ``fresh`` asks again). Raises the client's error when no broker answers."""
    key = settings.kafka_bootstrap
    now = time.monotonic()
    with _lock:
        hit = _cache.get(key)
    if hit is not None and not fresh and now - hit[0] < CACHE_S:
        return hit[1]
    info = _probe(settings)
    with _lock:
        _cache[key] = (now, info)
    return info


def fetch_wait_ms(settings: Settings) -> int:
    """The worker consumer's fetch long-poll wait: ``consumer_fetch_max_wait_ms`` when
    set, else by broker. Tansu answers a fetch only when the wait is over, so the wait
    bounds a lone event's delay: :data:`TANSU_FETCH_WAIT_MS`. Apache Kafka answers as
    soon as a record arrives, so a short wait only adds empty fetches (an idle worker
    made 50 a second, ~10 % of a core for the worker and 14 % for the broker at 20 ms;
    6 % and 3 % at 500, with the same list freshness; CHANGELOG, 2026-12-04):
    :data:`KAFKA_FETCH_WAIT_MS`. When no broker answers within 2 s, Tansu's value (the
    short one: never a slower list, and no start-up wait on the client's retries)."""
    from core.net import bootstrap_reachable

    if settings.consumer_fetch_max_wait_ms is not None:
        return settings.consumer_fetch_max_wait_ms
    try:
        if not bootstrap_reachable(settings.kafka_bootstrap):
            return TANSU_FETCH_WAIT_MS
        tansu = is_tansu(settings)
    except Exception:  # noqa: BLE001 - any client error: the broker is not up yet
        return TANSU_FETCH_WAIT_MS
    return TANSU_FETCH_WAIT_MS if tansu else KAFKA_FETCH_WAIT_MS


def is_tansu(settings: Settings) -> bool:
    """True when the broker at the bootstrap address is Tansu (workarounds apply)."""
    return describe_broker(settings).is_tansu
