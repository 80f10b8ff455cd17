"""The one settings object every streamrec process reads (environment prefix ``STREAMREC_``).

Resolution order for each field: environment variable, then the embedded stack's state file
(``.streamrec/stack.json``, written by ``streamrec up``) for the connection fields, then the
default below. Keeping this in one class means ``--help``, the README table and the code
cannot drift apart: ``streamrec config`` prints this class.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from core import setting_checks as checks
from core.limits import DEFAULT_MAX_FUTURE_S, MAX_BATCH_EVENTS, MAX_BATCH_ITEMS, MAX_N
from core.net import MAX_PORT
from core.redis_timeouts import RedisTimeoutSettings
from core.serve_cache_settings import ServeCacheSettings
from core.stack_settings import StackSettings


def _split_keys(raw: str) -> frozenset[str]:
    return frozenset(k.strip() for k in raw.split(",") if k.strip())


class Settings(StackSettings, RedisTimeoutSettings, ServeCacheSettings):
    """All configuration of streamrec; see README's configuration table (the embedded
    stack's fields come from :class:`StackSettings`, the Redis timeouts from
    :class:`RedisTimeoutSettings`, the near cache's from :class:`ServeCacheSettings`)."""

    model_config = SettingsConfigDict(env_prefix="STREAMREC_", extra="ignore")

    # --- connections -------------------------------------------------------------------
    kafka_bootstrap: checks.KafkaBootstrap = Field(
        "", description="Kafka bootstrap servers host[:port][,...] (no port: 9092); empty = "
        "the embedded stack's"
    )
    redis_url: checks.RedisUrl = Field("", description="Redis URL; empty = the embedded stack's")
    redis_mode: Literal["standalone", "cluster"] = Field(
        "standalone", description="standalone: the URL is one Redis; cluster: it names any "
                                  "node of a Redis Cluster (the clients find the others)")
    kafka_security_protocol: checks.KafkaSecurityProtocol = Field(
        "PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
    kafka_sasl_mechanism: checks.KafkaSaslMechanism = Field(
        "PLAIN", description="SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
    kafka_sasl_username: str = Field("", description="SASL username")
    kafka_sasl_password: str = Field("", description="SASL password (never logged)")
    kafka_ssl_cafile: str = Field("", description="CA bundle for Kafka TLS; empty = system CAs")
    kafka_ssl_certfile: str = Field("", description="client certificate for Kafka mTLS")
    kafka_ssl_keyfile: str = Field("", description="client key for Kafka mTLS")
    redis_tls_ca_file: str = Field("", description="CA bundle for rediss:// URLs")
    redis_tls_cert_file: str = Field("", description="client certificate for Redis mTLS")
    redis_tls_key_file: str = Field("", description="client key for Redis mTLS")
    kafka_idempotent_producer: bool = Field(
        False, description="idempotent API producer (fails on Tansu; safe on Apache Kafka)"
    )

    # --- topics ----------------------------------------------------------------------
    topic_events: str = Field("events", description="tracking events topic (key = user)")
    topic_catalog: str = Field("catalog", description="catalog/stock topic (key = item)")
    topic_dlq: str = Field("events-dlq", description="dead-letter topic for bad messages")
    topic_forgotten: str = Field(
        "forgotten", description="forgotten users and anonymous ids (compacted, key = id): "
                                 "read before the events by every replay, rebuild and retrain"
    )
    topic_partitions: int = Field(4, ge=1, le=256, description="partitions of new topics")
    topic_events_retention_ms: int = Field(
        -1, ge=-1, description="retention of the events and dead-letter topics in ms; -1 = "
                               "forever (the log is the source of truth)"
    )
    topic_catalog_retention_ms: int = Field(
        -1, ge=-1, description="retention of the (compacted) catalog topic in ms; -1 = forever"
    )
    topic_replication_factor: int = Field(
        1, ge=1, le=32, description="replicas of each new topic, the worker's changelog included"
    )
    topic_min_insync_replicas: int = Field(
        1, ge=1, le=32, description="min.insync.replicas of each new topic (acks=all writes "
                                    "need this many replicas); at most the replication factor"
    )
    app_id: str = Field("streamrec", description="Faust app id = consumer group id")

    # --- API -------------------------------------------------------------------------
    api_host: str = Field("127.0.0.1", description="API bind address")
    api_port: int = Field(8000, ge=0, le=MAX_PORT, description="API port")
    tracking_keys: str = Field("", description="comma-separated tracking API keys")
    read_keys: str = Field("", description="comma-separated read API keys")
    admin_keys: str = Field("", description="comma-separated admin API keys")
    allow_no_auth: bool = Field(
        False, description="serve without any API key on a non-loopback address (refused "
                           "at startup otherwise)"
    )
    ops_require_key: bool = Field(
        False, description="/metrics needs an admin key, and /docs, /redoc, /openapi.json "
                           "and / any configured key"
    )
    max_body_bytes: int = Field(1_048_576, ge=1024, description="largest accepted request body")
    max_batch_events: int = Field(
        MAX_BATCH_EVENTS, ge=1, description="most events in one POST /v1/events")
    max_batch_items: int = Field(
        MAX_BATCH_ITEMS, ge=1, description="most items in one POST /v1/items")
    require_catalog: bool = Field(
        False, description="serve only items present in the catalog (else unknown ids "
                           "servable); the worker then keeps no per-item state of unknown "
                           "items (compose turns it on)"
    )
    cors_origins: str = Field("", description="comma-separated allowed CORS origins, or *")
    produce_timeout_s: float = Field(5.0, gt=0, le=300, description="wait this long for "
                                     "Kafka's ack (at most 300)")
    max_future_skew_s: float = Field(
        DEFAULT_MAX_FUTURE_S, ge=0,
        description="client timestamps may be this far ahead of the server clock (else 422); "
                    "any age in the past is accepted",
    )
    idempotency_ttl_s: int = Field(
        86400, ge=60, description="how long POST /v1/events remembers an Idempotency-Key"
    )
    api_reuse_port: bool = Field(
        False, description="bind the API port with SO_REUSEPORT, so several API processes "
                            "share it and Linux spreads connections over them (`up` sets it)"
    )
    api_forwarded_allow_ips: str = Field(
        "127.0.0.1", description="proxies whose X-Forwarded-For gives the client address "
                                 "(comma-separated addresses or networks, or *)"
    )
    api_fast_path: bool = Field(
        True, description="answer well-formed recommendation GETs ahead of routing and middleware"
    )
    api_gc_tuning: bool = Field(True, description="freeze startup objects and collect "
                                "garbage less often (p99)")
    rate_limit_read_per_s: float = Field(
        2000.0, ge=0, description="requests/s per read key (burst: one second's worth); 0 = off"
    )
    rate_limit_tracking_per_s: float = Field(
        5000.0, ge=0, description="tracking events/s per tracking key (burst: one second's); "
                                  "0 = off"
    )
    rate_limit_entity_per_s: float = Field(
        10.0, ge=0, description="tracking events/s per user or anonymous id; 0 = off"
    )
    rate_limit_entity_burst: float = Field(
        200.0, ge=1, description="events one user or anonymous id may send at once"
    )
    rate_limit_address_per_s: float = Field(
        200.0, ge=0, description="tracking events/s per source address (IPv6: per /64); "
                                 "0 = off"
    )
    rate_limit_address_burst: float = Field(
        1000.0, ge=1, description="events one source address may send at once"
    )
    rate_limit_admin_per_s: float = Field(
        500.0, ge=0, description="requests/s per admin key (burst: one second's); 0 = off"
    )
    max_per_category: int = Field(
        0, ge=0, le=MAX_N, description="default max_per_category of every recommendation "
                                       "list (a request's own value wins); 0 = no cap"
    )
    buy_again: bool = Field(
        False, description="context=checkout re-offers purchased consumables; off by default "
                           "because API.md promises purchased items never appear"
    )
    buy_again_min_buyers: int = Field(
        5, ge=1, description="checkout 'buy again': purchasers an item needs before its "
                             "repeat-purchase rate is trusted"
    )
    buy_again_min_repeat_rate: float = Field(
        0.2, ge=0, le=1, description="checkout 'buy again': share of an item's purchases "
                                     "that must be repeats (consumables)"
    )

    # --- worker ----------------------------------------------------------------------
    worker_metrics_port: int = Field(
        0, ge=0, le=MAX_PORT, description="worker Prometheus port; 0 = pick a free one"
    )
    worker_metrics_host: str = Field(
        "127.0.0.1", description="worker Prometheus bind address (0.0.0.0 to be scraped "
        "from another host or container)")
    consumer_fetch_max_wait_ms: int | None = Field(None, ge=1, le=5000, description=(
        "worker fetch long-poll wait (ms); unset: 20 on Tansu, 500 on Apache Kafka"))
    faust_compat_unsafe: bool = Field(
        False, description="start the worker on faust-streaming/mode-streaming/aiokafka "
        "versions its patches were not checked on (unsafe)",
    )
    stream_batch_size: int = Field(500, ge=1, description="max messages per stream batch")
    stream_batch_within_s: float = Field(0.005, gt=0, description="max wait to fill a batch")
    stream_step_events: int = Field(4000, ge=1, description="most events the worker applies "
                                    "in one step (one Redis round trip)")
    coalesce_backlog: int = Field(10_000, ge=1, description="events waiting beyond a batch from "
                                  "which the worker is behind: lists wait, rebuilt once each")
    coalesce_max_delay_s: float = Field(30.0, ge=0, description="a list's re-fold waits "
                                        "this long, then goes first (at most 64 a batch); "
                                        "0 = never")
    session_timeout_s: float = Field(
        6.0, gt=0, le=1800, description="consumer-group session timeout (Tansu joins take "
                                        "~half; at most Kafka's 1800 s cap)"
    )
    history_max: int = Field(200, ge=1, description="events kept per user for fold-in")
    cooc_window: int = Field(5, ge=0, description="recent items paired per event (similar)")
    list_size: int = Field(100, ge=10, description="items stored per prepared list")
    foldin_candidates: int = Field(
        5000, ge=0,
        description="items the stream ranks per refolded user (largest factor norms); 0 = all",
    )
    blend_depth: int = Field(
        30, ge=1, description="candidates per source the worker reads for the stored blend"
    )
    sweep_entities: int = Field(
        10_000, ge=0,
        description="recently active entities whose lists a worker rebuilds (blend and "
        "fold-in on the new model) after a model swap; 0 = off",
    )
    sweep_per_batch: int = Field(
        256, ge=1, description="most entities the post-swap sweep rebuilds per batch"
    )
    sweep_window_s: float = Field(
        3600.0, gt=0,
        description="the post-swap sweep rebuilds only entities active this recently "
        "(receive time)",
    )
    dedupe_ttl_s: int = Field(
        7 * 86400, ge=60, description="how long event ids are remembered for idempotence"
    )

    # --- bounded state (stream/bounds.py) ---------------------------------------------
    entity_ttl_s: int = Field(
        90 * 86400, ge=60, description="per-user Redis keys (lists, cart, purchases) expire "
                                       "this long after the user's last event"
    )
    anonymous_ttl_s: int = Field(
        14 * 86400, ge=60, description="the same for anonymous ids"
    )
    history_sweep_interval_s: float = Field(
        600.0, gt=0, description="how often a worker deletes from its history table the "
        "entities past those TTLs since their last event (the table's bound), and lets go "
        "of the histories of partitions another worker owns now")
    cart_max: int = Field(
        100, ge=1, description="items kept per cart (the newest); the serve script reads at "
                               "most this many"
    )
    bought_max: int = Field(
        500, ge=1, description="purchases remembered per entity (history and serving filter)"
    )
    distinct_exact_max: int = Field(
        1000, ge=1, description="distinct users/buyers counted exactly per item; beyond, a "
                                "HyperLogLog estimates (about 1 %)"
    )
    ranked_items_max: int = Field(
        10_000, ge=100, description="items kept in popular, trending and the newest items"
    )
    cooc_max: int = Field(
        500, ge=10, description="co-occurrence partners kept per item (the strongest)"
    )
    identify_max_links: int = Field(
        3, ge=1, description="users one anonymous id may be identified as; later identify "
                             "calls for other users are ignored"
    )
    trending_half_life_s: float = Field(
        2 * 3600.0, gt=0, description="half-life of the trending score"
    )

    # --- experiments (docs/experiments.md) ---------------------------------------------
    experiment_ttl_s: int = Field(
        90 * 86400, ge=60, description="an experiment's assignments and outcome counters "
                                       "expire this long after their last write (DELETE "
                                       "removes them at once)"
    )
    experiment_max_entities: int = Field(
        1_000_000, ge=1, description="entities one experiment enrolls at most; later ones "
                                     "are served as if it did not exist (bounds its state)"
    )
    experiment_refresh_s: float = Field(
        1.0, gt=0, le=60, description="each API process also re-reads experiment "
                                      "definitions this often (a change made through "
                                      "another process applies from its 200 on anyway)"
    )

    # --- manipulation resistance (recommender/abuse.py) --------------------------------
    abuse_window_s: float = Field(
        3600.0, gt=0, description="an id adds to an item's popularity once per type per window "
                                  "(server receive time)"
    )
    abuse_max_per_window: int = Field(
        100, ge=1, description="most (item, type) contributions of one id per window"
    )
    abuse_trust_ramp_s: float = Field(
        3600.0, ge=0, description="history span (receive time) after which a new id counts "
                                  "fully; 0 = off"
    )
    abuse_min_trust: float = Field(
        0.05, gt=0, le=1, description="weight of a brand-new id in popular/trending"
    )
    abuse_max_quantity: int = Field(
        10, ge=1, description="a purchase's quantity counts up to this in popular/trending "
                              "(weight 1 + ln quantity)"
    )
    abuse_newcomer_budget: float = Field(
        3.0, ge=0, description="weight all not yet trusted ids together may add to one item "
                               "per window, a share per events partition; 0 = no limit"
    )

    # --- model -----------------------------------------------------------------------
    als_factors: int = Field(128, ge=2, description="ALS latent factors")
    als_iterations: int = Field(6, ge=1, description="ALS iterations per retrain (6 rank like 10)")
    als_cg_steps: int = Field(3, ge=1, le=10, description="conjugate-gradient steps per ALS solve")
    als_regularization: float = Field(10.0, ge=0, description="ALS L2 regularization")
    als_alpha: float = Field(20.0, gt=0, description="confidence = 1 + alpha * weight")
    als_seed: int = Field(
        0, ge=0, description="seed of ALS's initial factors (fixed: a retrain is repeatable)"
    )
    retrain_interval_s: float = Field(600.0, ge=0, description="0 = no scheduled retrains (only "
                                      "`streamrec train`); with STREAMREC_RETRAIN_GROWTH 0, "
                                      "seconds between timed retrains (each only if the log grew)")
    retrain_min_events: int = Field(50, ge=1, description="skip training below this many events")
    retrain_growth: float = Field(0.05, ge=0, description="the worker retrains once the events "
                                  "log's end offsets grew by this share of those the last "
                                  "retrain read, and never before; 0 = timed retrains instead")
    retrain_min_gap_s: float = Field(120.0, ge=0, description="least seconds from the end of "
                                     "one scheduled retrain (published or not) to the next")
    retrain_nice: int = Field(10, ge=0, le=19, description="niceness of the worker's scheduled "
                              "retrain process (beside the stream, which keeps the CPU it needs)")

    # --- misc (the embedded stack's own fields: core.stack_settings) -----------------
    state_dir: checks.StateDir = Field(Path(".streamrec"),
                                       description="where `up` records what it started")
    log_level: checks.LogLevel = Field("INFO", description="DEBUG, INFO, WARNING, ERROR, "
                                       "CRITICAL (any case)")

    @model_validator(mode="after")
    def _insync_fits_replicas(self) -> Settings:
        checks.check_insync_fits(self.topic_min_insync_replicas, self.topic_replication_factor)
        return self

    # -- derived ------------------------------------------------------------------------
    @property
    def tracking_key_set(self) -> frozenset[str]:
        """Configured tracking keys."""
        return _split_keys(self.tracking_keys)

    @property
    def read_key_set(self) -> frozenset[str]:
        """Configured read keys."""
        return _split_keys(self.read_keys)

    @property
    def admin_key_set(self) -> frozenset[str]:
        """Configured admin keys."""
        return _split_keys(self.admin_keys)

    @property
    def auth_enabled(self) -> bool:
        """Auth is off only when no key of any role is configured (the embedded demo)."""
        return bool(self.tracking_key_set or self.read_key_set or self.admin_key_set)

    @property
    def state_file(self) -> Path:
        """The embedded stack's record of what `streamrec up` started."""
        return self.state_dir / "stack.json"

    def with_stack_defaults(self) -> Settings:
        """Fill empty connection fields, and the API port when not set, from the embedded
        stack's state file, if any (``core.stack_defaults``): `streamrec train/status/
        simulate/demo` in the directory where `streamrec up` ran find that stack without
        exporting anything."""
        from core.stack_defaults import stack_defaults

        updates = stack_defaults(self)
        return self.model_copy(update=updates) if updates else self

    def public_dict(self) -> dict[str, object]:
        """Settings with secrets masked, safe to log or print."""
        data = self.model_dump(mode="json")
        for name in ("kafka_sasl_password", "tracking_keys", "read_keys", "admin_keys"):
            if data.get(name):
                data[name] = "***"
        data["redis_url"] = checks.mask_url(str(data.get("redis_url", "")))
        return data


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; tests call ``get_settings.cache_clear()``)."""
    return Settings().with_stack_defaults()


def env_for_child(settings: Settings) -> dict[str, str]:
    """Environment for a child process so it sees exactly these settings."""
    env = dict(os.environ)
    for name, value in settings.model_dump(mode="json").items():
        if value is None:  # unset: the child decides as this process would have
            env.pop(f"STREAMREC_{name.upper()}", None)
            continue
        text = str(value).lower() if isinstance(value, bool) else str(value)
        env[f"STREAMREC_{name.upper()}"] = text
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    return env
