"""The topics streamrec owns, with the configs that make the log a source of truth.

``events`` (key = user) and ``catalog`` (key = item, compacted: the latest state per item)
keep their records for ``topic_events_retention_ms`` / ``topic_catalog_retention_ms``
(forever by default: every list in Redis is rebuilt by replaying them, so a broker default
of 7 days would silently lose history). The dead-letter topic keeps the events'
retention; ``forgotten`` (key = a forgotten user or anonymous id, compacted) is kept
forever: every reader of ``events`` applies it first (``stream.forget``). All four get
``topic_replication_factor`` replicas and ``topic_min_insync_replicas``. So does the
worker's history-table changelog (compacted, :func:`changelog_configs`), created here with
the events topic's partitions rather than left to Faust: several workers starting at
once each tried to create it, and one that read its metadata mid-creation saw 0
partitions and crashed its agent (``PartitionsMismatch``).

:func:`ensure_topics` creates what is missing and never changes an existing topic: a
topic whose partitions, replicas or configs differ from these is reported as drifted
(``streamrec topics create`` prints it), so an operator decides. Tansu accepts the configs
but applies neither retention nor compaction, so drift is only checked on Apache Kafka.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from core.settings import Settings

#: The Faust table whose changelog the worker keeps (``stream/``: ``app.Table(...)``).
HISTORY_TABLE = "user_history"


@dataclass(frozen=True)
class TopicSpec:
    """One topic as streamrec wants it."""

    name: str
    partitions: int
    replication: int
    configs: dict[str, str]


@dataclass
class TopicReport:
    """What :func:`ensure_topics` found and did."""

    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    #: topic → one line per difference (``retention.ms is 604800000, wanted -1``)
    drift: dict[str, list[str]] = field(default_factory=dict)
    #: False on Tansu, which ignores topic configs (nothing to compare)
    drift_checked: bool = True


def changelog_topic(settings: Settings) -> str:
    """The Faust changelog topic of the worker's history table."""
    return f"{settings.app_id}-{HISTORY_TABLE}-changelog"


def changelog_configs(settings: Settings) -> dict[str, str]:
    """Extra configs of the history changelog (Faust sets ``cleanup.policy=compact``)."""
    return {"min.insync.replicas": str(settings.topic_min_insync_replicas)}


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """``events``, ``catalog``, the dead-letter topic, ``forgotten`` (the ids forgotten
    by ``DELETE /v1/users/{id}``: compacted and kept forever, since every replay of
    ``events`` needs it first; ``stream.forget``) and the history changelog (partitioned
    like ``events``, as Faust requires), with their configs."""
    insync = {"min.insync.replicas": str(settings.topic_min_insync_replicas)}
    events = str(settings.topic_events_retention_ms)
    replicas = settings.topic_replication_factor
    return [
        TopicSpec(settings.topic_events, settings.topic_partitions, replicas,
                  {"cleanup.policy": "delete", "retention.ms": events, **insync}),
        TopicSpec(settings.topic_catalog, settings.topic_partitions, replicas,
                  {"cleanup.policy": "compact",
                   "retention.ms": str(settings.topic_catalog_retention_ms), **insync}),
        TopicSpec(settings.topic_dlq, 1, replicas,
                  {"cleanup.policy": "delete", "retention.ms": events, **insync}),
        TopicSpec(settings.topic_forgotten, 1, replicas,
                  {"cleanup.policy": "compact", "retention.ms": "-1", **insync}),
        TopicSpec(changelog_topic(settings), settings.topic_partitions, replicas,
                  {"cleanup.policy": "compact", **changelog_configs(settings)}),
    ]


def admin_client(settings: Settings, *, timeout_s: float = 20.0) -> Any:
    """A kafka-python admin client, retried while the broker is still starting."""
    from kafka import KafkaAdminClient

    from core.kafka_tools import client_options

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return KafkaAdminClient(**client_options(settings), request_timeout_ms=10000)
        except Exception:  # noqa: BLE001 - broker still starting
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def ensure_topics(settings: Settings, *, timeout_s: float = 20.0) -> TopicReport:
    """Create the missing topics; report existing ones whose shape or configs drifted.

    Idempotent: running it again creates nothing and changes nothing.
    """
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    from core.broker import is_tansu

    specs = topic_specs(settings)
    report = TopicReport()
    admin = admin_client(settings, timeout_s=timeout_s)
    try:
        existing = set(admin.list_topics())
        for spec in specs:
            if spec.name in existing:
                report.existing.append(spec.name)
                continue
            try:
                admin.create_topics([NewTopic(spec.name, spec.partitions, spec.replication,
                                              topic_configs=dict(spec.configs))])
                report.created.append(spec.name)
            except TopicAlreadyExistsError:
                report.existing.append(spec.name)
        if is_tansu(settings):
            report.drift_checked = False
            return report
        wanted = [s for s in specs if s.name in report.existing]
        report.drift = {name: lines for name, lines in _drift(admin, wanted).items() if lines}
    finally:
        admin.close()
    return report


def _drift(admin: Any, specs: list[TopicSpec]) -> dict[str, list[str]]:
    """Per topic, how its partitions, replicas and configs differ from ``specs``
    (partitions and replicas are not compared where the spec says 0)."""
    from kafka.admin import ConfigResource, ConfigResourceType

    if not specs:
        return {}
    resources = [ConfigResource(ConfigResourceType.TOPIC, s.name) for s in specs]
    configs = admin.describe_configs(resources, config_filter="all").get("topic", {})
    shapes = {t["name"]: t["partitions"] for t in admin.describe_topics([s.name for s in specs])}
    out: dict[str, list[str]] = {}
    for spec in specs:
        lines = out.setdefault(spec.name, [])
        parts = shapes.get(spec.name) or []
        if spec.partitions and parts and len(parts) != spec.partitions:
            lines.append(f"partitions is {len(parts)}, wanted {spec.partitions}")
        replicas = min((len(p.get("replica_nodes") or []) for p in parts), default=0)
        if spec.replication and parts and replicas != spec.replication:
            lines.append(f"replication factor is {replicas}, wanted {spec.replication}")
        found = configs.get(spec.name, {})
        for key, value in spec.configs.items():
            actual = (found.get(key) or {}).get("value")
            if actual is not None and str(actual) != value:
                lines.append(f"{key} is {actual}, wanted {value}")
    return out
