"""Prometheus metrics of the worker process, and a rolling freshness summary."""

from __future__ import annotations

from collections import Counter as Counter_
from collections import deque
from collections.abc import Iterable
from typing import Any

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

from core.ops_records import FRESHNESS_BUCKETS_MS, histogram_fields

EVENTS_PROCESSED = Counter(
    "streamrec_events_processed_total", "Tracking events taken from the events topic"
)
EVENTS_APPLIED = Counter(
    "streamrec_events_applied_total", "Events whose counted effects were new (not replays)"
)
DEAD_LETTERED = Counter(
    "streamrec_dead_lettered_total", "Messages sent to the dead-letter topic", ["topic"]
)
PRODUCE_REFUSED = Counter(
    "streamrec_produce_refused_total",
    "Records the worker produced that Kafka refused or did not acknowledge in time "
    "(forwards, dead letters, changelog), each sent again until acknowledged",
    ["topic"],
)
CATALOG_RECORDS = Counter("streamrec_catalog_records_total", "Catalog records applied")
FORWARDED = Counter(
    "streamrec_events_forwarded_total", "Anonymous events forwarded to identified users"
)
SWEPT = Counter(
    "streamrec_entities_swept_total",
    "Recently active entities whose lists were rebuilt for a new model without an event",
)
LISTS_REBUILT = Counter(
    "streamrec_lists_rebuilt_total",
    "Entities whose lists were rebuilt for their own events (recent list, and the stored "
    "one once a model is live): once per entity and batch, or once for all its waiting "
    "events while the worker is behind; sweeps are counted apart",
)
HISTORIES_EXPIRED = Counter(
    "streamrec_histories_expired_total",
    "Entity histories deleted from the worker's table: no event for entity_ttl_s "
    "(anonymous_ttl_s for anonymous ids)",
)
HISTORIES_HELD = Gauge(
    "streamrec_histories_held",
    "Entity histories in this worker's table after its last history sweep",
)
IDENTIFY_REFUSED = Counter(
    "streamrec_identify_refused_total",
    "Identify events ignored: the anonymous id was already linked to identify_max_links users",
)
UNCATALOGUED = Counter(
    "streamrec_events_uncatalogued_total",
    "Events whose per-item effects were skipped: require_catalog and the item is unknown",
)
BUDGET_CUT = Counter(
    "streamrec_events_budget_cut_total",
    "Events of not yet trusted ids whose weight the item's newcomer budget cut",
)
BATCH_SECONDS = Histogram(
    "streamrec_batch_seconds", "Time to process one stream batch",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
FRESHNESS = Histogram(
    "streamrec_freshness_seconds",
    "From an event's arrival at the API to its user's lists first changing in Redis (the "
    "first freshness level: re-folded, or updated while the re-fold waits)",
    buckets=tuple(ms / 1000 for ms in FRESHNESS_BUCKETS_MS),
)
REFOLD_DELAY = Histogram(
    "streamrec_refold_delay_seconds",
    "From an event's arrival at the API to its user's stored list being re-folded (the "
    "second freshness level; coalesced while the worker is behind)",
    buckets=tuple(ms / 1000 for ms in FRESHNESS_BUCKETS_MS),
)
QUICK_LISTS = Counter(
    "streamrec_quick_lists_total",
    "Stored lists updated at the first freshness level (the newest item's neighbours in, "
    "touched items out) while their re-fold waits",
)
CATCH_UP = Counter(
    "streamrec_catch_up_events_total",
    "Events applied more than FRESHNESS_LIVE_S after their arrival (backfills stamped "
    "with event times, a long stop) or re-applied by a streamrec replay: not freshness "
    "samples",
)
MODEL_VERSION = Gauge("streamrec_model_info", "Live model version (label)", ["version"])
MODEL_TRAINED_AT = Gauge(
    "streamrec_model_trained_timestamp_seconds",
    "Unix time the live model was trained (its age: time() minus this)",
)
EVENTS_BY_TYPE = Counter(
    "streamrec_events_by_type_total",
    "Events decoded from the events topic, by type (the schema's types: a bounded label)",
    ["type"],
)
REDIS_OOM = Counter(
    "streamrec_redis_oom_errors_total",
    "Redis writes refused at maxmemory (noeviction): consumption waits, nothing is dropped",
)
CONSUMER_LAG = Gauge("streamrec_consumer_lag", "Messages behind the high watermark",
                     ["topic", "partition"])
#: The ``(topic, partition)`` label pairs :func:`set_consumer_lag` last exported.
_LAG_SERIES: set[tuple[str, str]] = set()


def count_types(types: Iterable[str]) -> None:
    """Add a batch's decoded events to ``streamrec_events_by_type_total`` (one call per
    type present, not per event)."""
    for kind, n in Counter_(types).items():
        EVENTS_BY_TYPE.labels(kind).inc(n)


def set_consumer_lag(lags: dict[tuple[str, str], int], held: set[tuple[str, str]]) -> None:
    """Export ``lags`` (``(topic, partition)`` → messages) and drop the series of every
    partition this worker no longer ``held``: a partition a rebalance gave to another
    worker would otherwise keep the lag it had at the handover, forever, next to the
    new owner's (a ``sum()`` alert would never clear)."""
    for (topic, partition), lag in lags.items():
        CONSUMER_LAG.labels(topic, partition).set(lag)
        _LAG_SERIES.add((topic, partition))
    for gone in _LAG_SERIES - held:
        CONSUMER_LAG.remove(*gone)
        _LAG_SERIES.discard(gone)


class RollingQuantiles:
    """Quantiles over the last N samples, for ``streamrec status``."""

    def __init__(self, size: int = 5000) -> None:
        self.samples: deque[float] = deque(maxlen=size)

    def add_many(self, values: list[float]) -> None:
        """Record samples."""
        self.samples.extend(values)

    def quantiles_ms(self) -> dict[Any, Any]:
        """p50/p99 in milliseconds (empty when no samples)."""
        if not self.samples:
            return {}
        arr = np.fromiter(self.samples, dtype=np.float64)
        p50, p99 = np.percentile(arr, [50, 99])
        return {"freshness_p50_ms": round(float(p50) * 1000, 1),
                "freshness_p99_ms": round(float(p99) * 1000, 1)}

    def histogram_ms(self) -> dict[str, int]:
        """Samples per freshness bucket (``core.ops_records``; empty when no samples)."""
        if not self.samples:
            return {}
        arr = np.fromiter(self.samples, dtype=np.float64) * 1000
        # side="left": a sample equal to a bound belongs to that bound's bucket (le).
        slots = np.searchsorted(np.asarray(FRESHNESS_BUCKETS_MS, dtype=np.float64), arr,
                                side="left")
        counts = np.bincount(slots, minlength=len(FRESHNESS_BUCKETS_MS) + 1)
        return histogram_fields([int(n) for n in counts])
