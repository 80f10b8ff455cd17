"""The pipeline's state as one dict: what ``streamrec status --json`` prints and what the
dashboard (``GET /v1/admin/dashboard``) shows, computed by the same code.

:class:`PipelineProbe` gathers topic end offsets, the worker group's committed offsets
and lag, pipeline counters, freshness (p50/p99 and a histogram), the last dead letters,
the live model with its age and training history, worker heartbeats, Redis memory
against its limit, and which processes ``streamrec up`` recorded still run (a dead one is
an error: ``errors.processes``). Every part degrades to nulls/zeros and an entry in
``errors`` instead of failing, so it is usable exactly when something is off.

The probe keeps its Kafka and Redis clients between calls: ``streamrec status`` makes one
call, an API process showing the dashboard one every few seconds (kafka-python: a new
consumer for the end offsets cost ~10 ms of CPU, a reused one ~2 ms, 2026-12-02).

End offsets come from Kafka's ListOffsets on Apache Kafka and from fetch high watermarks
(:func:`core.kafka_tools.fetch_high_watermarks`) on Tansu, which answers ListOffsets
"latest" too low (:mod:`core.broker` tells them apart).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from core.net import bootstrap_reachable
from core.ops_records import WORKER_REGISTRY_HORIZON_S, parse_entries, parse_histogram
from core.redis_client import num
from core.redis_keys import RedisKeys
from core.settings import Settings
from core.stack_processes import (
    exact_broker_version,
    processes_of,
    recorded_components,
    stopped_processes,
)
from core.worker_beats import STALE_FRESHNESS_S, worker_entries, workers_freshness

#: Seconds a Kafka request may take before the part is reported as an error.
KAFKA_TIMEOUT_S = 10.0
def empty_status(settings: Settings) -> dict[str, Any]:
    """Every key of the status with its value when nothing could be read."""
    return {
        "generated_at": round(time.time(), 3),
        "lag": 0,
        "processed": 0,
        "events_per_s": None,
        "dead_lettered": 0,
        "dead_letters": [],
        "model_version": None,
        "model_age_s": None,
        "model": {},
        "model_history": [],
        "freshness": None,
        "workers": [],
        "redis_memory_bytes": None,
        "redis_maxmemory_bytes": None,
        "redis_maxmemory_policy": None,
        "redis_memory_ratio": None,
        "redis_memory_alert": False,
        "redis": {"mode": settings.redis_mode, "nodes": 0, "masters": 0},
        "broker": {"kind": None, "version": None, "brokers": 0},
        "topics": {},
        "group": {"id": settings.app_id, "partitions": [], "lag_by_topic": {}},
        "stats": {},
        "components": {},
        "processes": [],
        "errors": {},
    }


def _group_offsets(admin: Any, group: str) -> dict[Any, int]:
    """Committed offset per TopicPartition of ``group``. Right after a broker restart
    the group coordinator loads for a moment, and in a cluster that lost the coordinator's
    broker, metadata names the dead broker until it is fenced (kafka-python 3 raises
    instead of waiting): retried for up to :data:`KAFKA_TIMEOUT_S`."""
    from kafka.errors import (
        CoordinatorLoadInProgressError,
        CoordinatorNotAvailableError,
        KafkaConnectionError,
        NotCoordinatorError,
    )

    deadline = time.monotonic() + KAFKA_TIMEOUT_S
    while True:
        try:
            raw = admin.list_group_offsets({group: None}).get(group, {})
            return {tp: int(meta.offset) for tp, meta in raw.items()}
        except (CoordinatorLoadInProgressError, CoordinatorNotAvailableError,
                KafkaConnectionError, NotCoordinatorError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class PipelineProbe:
    """Reads the pipeline's state; reuse one for repeated reads, :meth:`close` at the end.

    Not for concurrent use: one call at a time (from any thread).
    """

    def __init__(self, settings: Settings, keys: RedisKeys | None = None) -> None:
        self.settings = settings
        self.keys = keys or RedisKeys()
        self._admin: Any = None
        self._consumer: Any = None
        self._redis: Any = None
        #: The handshake's refusal (a rejected login, an untrusted certificate) when the
        #: last Kafka read stopped at it (``errors["kafka"]`` is then this line), else None.
        self.kafka_refusal: str | None = None

    def __enter__(self) -> PipelineProbe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the clients (the probe reconnects when used again)."""
        self._close_kafka()
        if self._redis is not None:
            self._redis.close()
            self._redis = None

    def _close_kafka(self) -> None:
        for client in (self._admin, self._consumer):
            if client is not None:
                try:
                    client.close()
                except Exception:  # noqa: BLE001 - closing a broken client
                    pass
        self._admin = self._consumer = None

    # -- the whole status ---------------------------------------------------------------
    def collect(self, *, parallel: bool = False) -> dict[str, Any]:
        """Everything known about the pipeline now (see :func:`empty_status` for the keys).
        Never raises for an unreachable server: its fields stay null/zero and ``errors``
        says why (``lag`` is null without Kafka). ``parallel`` reads Kafka, Redis and the
        recorded processes at the same time (three threads)."""
        result = empty_status(self.settings)
        parts = (("kafka", self.kafka_status), ("redis", self.redis_status),
                 ("components", self.processes_status))
        if parallel:
            with ThreadPoolExecutor(max_workers=len(parts)) as pool:
                futures = [(name, pool.submit(fn)) for name, fn in parts]
                outcomes = [(name, _outcome(future.result)) for name, future in futures]
        else:
            outcomes = [(name, _outcome(fn)) for name, fn in parts]
        for name, (found, error) in outcomes:
            if error is not None:
                result["errors"][name] = error
            else:
                result.update(found)
        if "kafka" in result["errors"]:
            result["lag"] = None  # unknown: a 0 reads as drained (status, dashboard, scripts)
        stopped = stopped_processes(result["processes"])
        if stopped:
            result["errors"]["processes"] = stopped
        exact_broker_version(self.settings, result["broker"], result["components"])
        return result

    def processes_status(self) -> dict[str, Any]:
        """The processes ``streamrec up`` recorded here and whether each still runs
        (:mod:`core.stack_processes`; none when the stack was not started by ``up``)."""
        components = recorded_components(self.settings)
        return {"components": components, "processes": processes_of(components)}

    # -- Kafka --------------------------------------------------------------------------
    def kafka_status(self) -> dict[str, Any]:
        """Which broker answers, topics' end offsets and the worker group's committed
        offsets and lag."""
        from core.broker import describe_broker
        from core.kafka_tools import topic_names

        settings = self.settings
        if not bootstrap_reachable(settings.kafka_bootstrap):
            self._close_kafka()
            raise ConnectionError(f"cannot reach Kafka at {settings.kafka_bootstrap}")
        if self._admin is None and settings.kafka_security_protocol != "PLAINTEXT":
            # kafka-python retries a refused login for its whole bootstrap timeout (~30 s)
            # and then only says "Unable to bootstrap": ask the handshake once first.
            from core.connections import kafka_handshake_problem

            self.kafka_refusal = kafka_handshake_problem(settings)
            if self.kafka_refusal:
                raise ConnectionError(self.kafka_refusal)
        try:
            admin = self._admin_client()
            existing = set(admin.list_topics())
            committed = _group_offsets(admin, settings.app_id)
            wanted = topic_names(settings)
            group_topics = sorted({tp.topic for tp in committed} - set(wanted))
            present = [t for t in wanted + group_topics if t in existing]
            broker = describe_broker(settings)
            ends = self._end_offsets(present, tansu=broker.is_tansu)
        except Exception:
            self._close_kafka()  # a broken connection: start afresh next time
            raise
        summary = _kafka_summary(settings, wanted + group_topics, existing, committed, ends)
        summary["broker"] = broker.to_dict()
        return summary

    def _admin_client(self) -> Any:
        from kafka import KafkaAdminClient

        from core.kafka_tools import client_options

        if self._admin is None:
            self._admin = KafkaAdminClient(**client_options(self.settings),
                                           request_timeout_ms=int(KAFKA_TIMEOUT_S * 1000))
        return self._admin

    def _end_offsets(self, topics: list[str], *, tansu: bool) -> dict[str, dict[int, int]]:
        from kafka import KafkaConsumer, TopicPartition

        from core.kafka_tools import (
            HIGHWATER_FETCH_WAIT_MS,
            client_options,
            end_offsets,
            fetch_high_watermarks,
        )

        if self._consumer is not None and any(
                self._consumer.partitions_for_topic(t) is None for t in topics):
            self._consumer.close()  # a topic created since: fresh metadata
            self._consumer = None
        if self._consumer is None:
            # check_crcs=False: the records fetched on the way are thrown away, and the
            # pure-Python CRC-32C was half of this call's CPU time.
            self._consumer = KafkaConsumer(**client_options(self.settings),
                                           enable_auto_commit=False, check_crcs=False,
                                           fetch_max_wait_ms=HIGHWATER_FETCH_WAIT_MS,
                                           request_timeout_ms=int(KAFKA_TIMEOUT_S * 1000) + 1)
        consumer = self._consumer
        tps = [TopicPartition(t, p) for t in topics
               for p in sorted(consumer.partitions_for_topic(t) or ())]
        ends = (fetch_high_watermarks(consumer, tps, timeout_s=KAFKA_TIMEOUT_S) if tansu
                else end_offsets(consumer, tps))
        out: dict[str, dict[int, int]] = {t: {} for t in topics}
        for tp, end in ends.items():
            out[tp.topic][tp.partition] = end
        return out

    # -- Redis --------------------------------------------------------------------------
    def _redis_client(self) -> Any:
        from core.redis_client import sync_client

        if self._redis is None:
            self._redis = sync_client(self.settings, socket_timeout=3.0,
                                      socket_connect_timeout=3.0, decode_responses=True)
        return self._redis

    def redis_status(self) -> dict[str, Any]:
        """Pipeline counters, freshness, dead letters, the live model and its history,
        worker heartbeats and memory, from Redis (two round trips)."""
        keys = self.keys
        client = self._redis_client()
        now = time.time()
        pipe = client.pipeline(transaction=False)
        pipe.hgetall(keys.stats)
        pipe.get(keys.model_current)
        pipe.zrangebyscore(keys.worker_registry, now - WORKER_REGISTRY_HORIZON_S, "+inf")
        pipe.lrange(keys.dead_letters, 0, -1)
        pipe.lrange(keys.model_history, 0, -1)
        pipe.hgetall(keys.freshness_histogram)
        stats, version, worker_ids, dead, history, histogram = pipe.execute()
        pipe = client.pipeline(transaction=False)
        pipe.hgetall(keys.model_meta(version) if version else keys.model_meta(""))
        for worker_id in worker_ids:
            pipe.hgetall(keys.worker(worker_id))
        meta, *beats = pipe.execute()
        if not version:
            meta = {}
        memory, topology = _memory(client)

        trained_at = num(meta.get("trained_at"))
        p50, p99 = num(stats.get("freshness_p50_ms")), num(stats.get("freshness_p99_ms"))
        workers = worker_entries(dict(zip(worker_ids, beats, strict=True)), now)
        freshness = workers_freshness(workers, now)
        if freshness is None and (p50 is not None or p99 is not None):
            at = num(stats.get("freshness_at"))
            age = round(max(0.0, now - at), 1) if at is not None else None
            freshness = {"p50_ms": p50, "p99_ms": p99, "histogram": parse_histogram(histogram),
                         "age_s": age, "stale": age is None or age > STALE_FRESHNESS_S,
                         "workers": 1}
        used, maxmemory = num(memory.get("used_memory")), num(memory.get("maxmemory"))
        ratio = memory.get("ratio")  # the fullest master's, on a cluster
        return {
            "processed": int(num(stats.get("processed")) or 0),
            "dead_lettered": int(num(stats.get("dead_lettered")) or 0),
            "dead_letters": parse_entries(dead),
            "stats": {k: num(v) if num(v) is not None else v for k, v in stats.items()},
            "model_version": version,
            "model_age_s": (round(max(0.0, now - trained_at), 1) if trained_at is not None
                            else None),
            "model": {k: num(v) if num(v) is not None else v for k, v in meta.items()},
            "model_history": parse_entries(history),
            "freshness": freshness,
            "workers": workers,
            # Events/s processed over the last ~10 s: the sum of the live workers' rates.
            "events_per_s": round(sum(w.get("events_per_s") or 0 for w in workers
                                      if not w["stale"]), 2),
            "redis_memory_bytes": used,
            # 0: no limit set (Redis then grows until the machine runs out)
            "redis_maxmemory_bytes": int(maxmemory) if maxmemory is not None else None,
            "redis_maxmemory_policy": memory.get("maxmemory_policy"),
            "redis_memory_ratio": ratio,
            # Near maxmemory Redis refuses writes (noeviction): the worker stops consuming.
            "redis_memory_alert": (ratio is not None
                                   and ratio >= self.settings.redis_memory_alert_ratio),
            "redis": topology,
        }


def _memory(client: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Redis memory (``core.redis_client.memory_info``: a cluster's masters summed,
    with the fullest master's ratio) and the topology (``core.redis_client.topology``)."""
    from core.redis_client import memory_info, topology

    return memory_info(client), topology(client)


def _outcome(fn: Any) -> tuple[dict[str, Any], str | None]:
    """``(fn(), None)``, or ``({}, "Type: message")`` when it raised."""
    try:
        return fn(), None
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return {}, f"{type(exc).__name__}: {exc}"


def _kafka_summary(settings: Settings, names: list[str], existing: set[str],
                   committed: dict[Any, int], ends: dict[str, dict[int, int]]
                   ) -> dict[str, Any]:
    """The ``topics``, ``group`` and ``lag`` keys from what Kafka answered."""
    topics: dict[str, Any] = {}
    for name in names:
        marks = ends.get(name, {})
        topics[name] = {
            "exists": name in existing,
            "partitions": len(marks),
            "end_offsets": [marks[p] for p in sorted(marks)],
            "total": sum(marks.values()),
        }
    rows: list[dict[str, Any]] = []
    lag_by_topic: dict[str, int] = {}
    group_topic_names = {tp.topic for tp in committed}
    for name in names:
        if name not in ends or (name != settings.topic_events
                                and name not in group_topic_names):
            continue
        for partition, end in sorted(ends[name].items()):
            offset = next((o for tp, o in committed.items()
                           if tp.topic == name and tp.partition == partition), -1)
            # No commit yet: the group will start at the beginning, so all of it is lag.
            lag = max(0, end - max(offset, 0))
            rows.append({"topic": name, "partition": partition, "end_offset": end,
                         "committed": offset if offset >= 0 else None, "lag": lag})
            lag_by_topic[name] = lag_by_topic.get(name, 0) + lag
    return {
        "topics": topics,
        "group": {"id": settings.app_id, "partitions": rows, "lag_by_topic": lag_by_topic},
        "lag": lag_by_topic.get(settings.topic_events, 0),
    }
