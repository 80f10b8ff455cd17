"""Every Redis key name streamrec uses: the contract between the writer (stream/) and the
reader (api/). Nothing else builds key strings (the builders of merchandising and
forgetting are in :mod:`core.merch_keys`, part of :class:`RedisKeys`).

Layout (``p`` is the prefix, default ``sr:``):

=============================  ======  =====================================================
key                            type    content
=============================  ======  =====================================================
p u:{entity}:recs              string  JSON ``{"v": model_version, "ts": epoch_s,
                                       "items": [[item_id, score], ...]}`` (personal list)
p u:{entity}:recent            string  JSON list of the entity's recent item ids, newest
                                       first (session fallback)
p u:{entity}:bought            zset    item → event time: the newest ``bought_max`` items
                                       the entity purchased (never recommended)
p u:{entity}:cart              zset    item → event time: the newest ``cart_max`` items in
                                       the entity's cart now (add_to_cart adds,
                                       remove_from_cart and purchase remove)
p u:{entity}:basket            zset    item → event time: the entity's last 30 carted or
                                       purchased items (complements)
p u:{user}:anons               set     anonymous ids identified as this user (forgotten too)
  (every u:{entity}:* key expires ``entity_ttl_s`` — ``anonymous_ttl_s`` for anonymous
  ids — after the entity's last write)
p i:{item}:similar             string  JSON ``{"v": ..., "items": [[item_id, score], ...]}``
                                       from the last retrain
p i:{item}:cooc                zset    streaming co-occurrence partner → weight
p i:{item}:meta                hash    name, price, currency, category, in_stock ("1"/"0"),
                                       deleted ("1"/"0"), properties (JSON), updated_at
p i:{item}:stats               hash    per event type counts (view, add_to_cart, ...)
p i:{item}:users               set     the first ``distinct_exact_max`` entities that
                                       interacted with the item (exact count up to there)
p i:{item}:users_hll           string  HyperLogLog of all of them (the count beyond)
p i:{item}:buyers              set     the same for entities that purchased the item (the
p i:{item}:buyers_hll          string  repeat-purchase rate is stats.purchase vs these)
p i:{item}:newcomers:{w}       string  weight not yet trusted ids added to the item in
                                       abuse window ``w`` (capped; expires after 2 windows)
p i:{item}:carters             zset    entity → event time: the last 200 entities that
                                       carted or purchased the item (complements)
p items:unavailable            set     item ids out of stock or deleted (serve-time filter)
p items:deleted                set     deleted item ids
p items:category, items:price  hash    item → its category / price: catalog columns, so the
                                       serve script filters a page of candidates per HMGET
p items:columns                string  set once both columns are whole (catalog_columns)
p cat:{category}:items         set     the items of this category and of those below it
p popular                      zset    item → all-time weighted interaction score (top
                                       ``ranked_items_max`` kept)
p trending                     zset    item → forward-decayed score (see trending_epoch;
                                       top ``ranked_items_max`` kept)
p trending:t0                  string  epoch seconds the trending scores are relative to
p seen:{hour}                  set     :func:`seen_member` of the events applied in that
                                       event-time hour (dedupe)
p idem:{digest}                string  body fingerprint of an acknowledged POST /v1/events
                                       batch with an Idempotency-Key (expires)
p promotions                   hash    promotion id → JSON promotion (admin, api.promotions)
p forgotten                    hash    entity → epoch s it was forgotten: events naming it
                                       received until then never apply (stream.forget)
p model:current                string  live model version
p model:{v}:item_ids           string  JSON list of item ids, row order of the factors
p model:{v}:item_factors       string  ``numpy.save`` bytes of the item factor matrix
p model:{v}:similar_rows       hash    item id → its similar list as int32 model rows +
                                       int32 micro-scores (the worker's copy; JSON above
                                       is the API's)
p model:{v}:meta               hash    trained_at, n_users, n_items, n_events, ...
p model:train-lock             string  holder id while a retrain runs
p model:history                list    JSON facts of the last trainings, newest first
                                       (``core.ops_records``)
p worker:{id}                  hash    heartbeat: model_version, processed, metrics_port
p stats                        hash    counters: processed, dead_lettered, ...; counted_at
p stats:workers                zset    worker id → its last heartbeat (epoch s): which
                                       ``worker:{id}`` hashes to read, without a SCAN
p stats:freshness              hash    freshness histogram of the last samples: bucket
                                       upper bound in ms (or ``inf``) → count
p stats:dead-letters           list    JSON reason and origin of the last dead-lettered
                                       messages, newest first
p sentinel                     string  set by a completed rebuild from the log; missing =
                                       Redis was flushed/restarted (worker rebuilds)
p rebuild-lock                 string  holder id while a rebuild runs
p relist:pending               zset    entity → since when its list waits (coalesce)
p applied:{topic}              hash    partition → next offset whose message the workers
                                       have applied (compared with the group's committed
                                       offsets: a Redis behind them is stale)
p attrib:{origin}              hash    event type → count of events carrying a list id
                                       of that origin (see core.attribution)
p attrib:ctx:{context}         hash    the same per page context (home, cart, ...)
p experiments                  hash    experiment id → JSON definition (variants, contexts,
                                       status, times, run token; api.experiment_store)
p exp:{id}:assign              hash    entity → its variant (``?`` first while its exposure
                                       is not yet on Kafka; ``variant<TAB>unit`` when it
                                       inherited the variant at identify); API-written,
                                       bounded by ``experiment_max_entities``, expires
                                       ``experiment_ttl_s`` after the last enrolment
p expout:{id}:entities         hash    entity → ``unit<TAB>variant<TAB>exposed_at`` (the
                                       worker, from exposure records; derived)
p expout:{id}:units            hash    unit (an exposed person) → variant
p expout:{id}:revenue          hash    purchasing unit → its revenue in micro-units
p expout:{id}:counts           hash    ``{variant}|{metric}`` → count (entities,
                                       impression, click, add_to_cart, purchase,
                                       purchasers, revenue micro-units, revenue_sq)
p expout:{id}:seen:{hour}      set     :func:`seen_member` of the events counted in that
                                       event-time hour (the outcomes' own dedupe)
  (every expout: key expires ``experiment_ttl_s`` after its last write)
p rl:{role}:{key id}           string  rate-limit state (GCRA theoretical arrival time);
                                       role ``addr``/``ent``: digests of a source address
                                       or a user/anonymous id (expire once drained)
=============================  ======  =====================================================
"""

from __future__ import annotations

import hashlib

from core.merch_keys import MerchKeys


def seen_member(namespace: str, event_id: str) -> str:
    """The dedupe-set member of an event: a digest of its id within its namespace
    (``TopicEvent.dedupe_namespace``, the anonymous or user id), so equal ids of different
    shoppers never collide and members have one size however long the ids are."""
    raw = f"{namespace}\x00{event_id}".encode("utf-8", errors="surrogatepass")
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


class RedisKeys(MerchKeys):
    """Builds key names under one prefix, so several deployments can share a Redis
    (the keys of merchandising and forgetting: :class:`core.merch_keys.MerchKeys`)."""

    __slots__ = ("p",)

    def __init__(self, prefix: str = "sr:") -> None:
        self.p = prefix

    # users / anonymous ids
    def user_recs(self, entity: str) -> str:
        """Personal list of a user or anonymous id."""
        return f"{self.p}u:{entity}:recs"

    def user_recent(self, entity: str) -> str:
        """Recent items of a user or anonymous id (newest first)."""
        return f"{self.p}u:{entity}:recent"

    def user_bought(self, entity: str) -> str:
        """Items a user purchased."""
        return f"{self.p}u:{entity}:bought"

    def user_cart(self, entity: str) -> str:
        """Items in a user's cart now."""
        return f"{self.p}u:{entity}:cart"

    def user_basket(self, entity: str) -> str:
        """A user's recently carted or purchased items (by event time)."""
        return f"{self.p}u:{entity}:basket"

    def entity_keys(self, entity: str) -> list[str]:
        """Every per-entity key of one user or anonymous id (what forgetting deletes)."""
        return [self.user_recs(entity), self.user_recent(entity), self.user_bought(entity),
                self.user_cart(entity), self.user_basket(entity), self.user_anons(entity)]

    # items
    def item_similar(self, item: str) -> str:
        """Model-based similar-item list."""
        return f"{self.p}i:{item}:similar"

    def item_cooc(self, item: str) -> str:
        """Streaming co-occurrence neighbours."""
        return f"{self.p}i:{item}:cooc"

    def item_meta(self, item: str) -> str:
        """Catalog metadata and stock."""
        return f"{self.p}i:{item}:meta"

    def item_stats(self, item: str) -> str:
        """Per-type interaction counts."""
        return f"{self.p}i:{item}:stats"

    def item_users(self, item: str) -> str:
        """Distinct entities that interacted with an item."""
        return f"{self.p}i:{item}:users"

    def item_users_hll(self, item: str) -> str:
        """HyperLogLog of the entities that interacted with an item."""
        return f"{self.p}i:{item}:users_hll"

    def item_buyers(self, item: str) -> str:
        """Distinct entities that purchased an item (the first ``distinct_exact_max``)."""
        return f"{self.p}i:{item}:buyers"

    def item_buyers_hll(self, item: str) -> str:
        """HyperLogLog of the entities that purchased an item."""
        return f"{self.p}i:{item}:buyers_hll"

    def item_newcomers(self, item: str, window: int) -> str:
        """Weight not yet trusted ids added to an item in one abuse window."""
        return f"{self.p}i:{item}:newcomers:{window}"

    def item_carters(self, item: str) -> str:
        """Recent entities that carted or purchased an item (by event time)."""
        return f"{self.p}i:{item}:carters"

    @property
    def unavailable(self) -> str:
        """Out-of-stock or deleted items."""
        return f"{self.p}items:unavailable"

    @property
    def deleted(self) -> str:
        """Deleted items."""
        return f"{self.p}items:deleted"

    # global lists
    @property
    def popular(self) -> str:
        """All-time weighted popularity."""
        return f"{self.p}popular"

    @property
    def trending(self) -> str:
        """Forward-decayed trending score."""
        return f"{self.p}trending"

    @property
    def trending_epoch(self) -> str:
        """Reference time of the trending scores."""
        return f"{self.p}trending:t0"

    def seen(self, hour_bucket: int) -> str:
        """Event ids applied in one event-time hour."""
        return f"{self.p}seen:{hour_bucket}"

    # model
    @property
    def model_current(self) -> str:
        """Live model version pointer."""
        return f"{self.p}model:current"

    def model_item_ids(self, version: str) -> str:
        """Item ids of a model version, in factor-row order."""
        return f"{self.p}model:{version}:item_ids"

    def model_item_factors(self, version: str) -> str:
        """Item factor matrix of a model version (``numpy.save`` bytes)."""
        return f"{self.p}model:{version}:item_factors"

    def model_similar_rows(self, version: str) -> str:
        """Hash: item id → its neighbour list as model rows and scores (``stream.row_lists``)."""
        return f"{self.p}model:{version}:similar_rows"

    def model_meta(self, version: str) -> str:
        """Facts about a model version."""
        return f"{self.p}model:{version}:meta"

    @property
    def model_history(self) -> str:
        """The last trainings' facts (versions' own meta hashes are dropped with them)."""
        return f"{self.p}model:history"

    @property
    def train_lock(self) -> str:
        """Held while a retrain runs, so only one runs at a time."""
        return f"{self.p}model:train-lock"

    # operations
    def worker(self, worker_id: str) -> str:
        """Heartbeat hash of one worker process."""
        return f"{self.p}worker:{worker_id}"

    @property
    def worker_pattern(self) -> str:
        """SCAN pattern matching every worker heartbeat."""
        return f"{self.p}worker:*"

    @property
    def stats(self) -> str:
        """Pipeline-wide counters."""
        return f"{self.p}stats"

    @property
    def worker_registry(self) -> str:
        """Worker id → last heartbeat time, so readers find heartbeats without a SCAN."""
        return f"{self.p}stats:workers"

    @property
    def freshness_histogram(self) -> str:
        """Freshness histogram of the worker that last published its samples."""
        return f"{self.p}stats:freshness"

    @property
    def dead_letters(self) -> str:
        """The last dead-lettered messages' reasons."""
        return f"{self.p}stats:dead-letters"

    def attribution(self, source: str) -> str:
        """Impression/click/purchase counts of lists of one origin."""
        return f"{self.p}attrib:{source}"

    @property
    def sentinel(self) -> str:
        """Present when Redis holds the state of the whole log (see stream/rebuild.py)."""
        return f"{self.p}sentinel"

    @property
    def rebuild_lock(self) -> str:
        """Held while a rebuild from the log runs."""
        return f"{self.p}rebuild-lock"

    @property
    def relist_pending(self) -> str:
        """Entities whose stored list waits for a rebuild (coalesced while behind)."""
        return f"{self.p}relist:pending"

    def applied(self, topic: str) -> str:
        """Per partition of ``topic``, the next offset the workers have applied to Redis."""
        return f"{self.p}applied:{topic}"

    def derived_patterns(self) -> tuple[str, ...]:
        """SCAN patterns of the state derived from the events log, which a rebuild wipes
        and replays: everything per entity, item statistics and co-occurrence, the global
        lists, the seen-sets, attribution, the pipeline counters (with their dead-letter
        reasons and freshness samples), waiting lists, experiments' outcome counters.
        Kept: experiment definitions and assignments, model artefacts (not in the log),
        catalog state (replayed from the catalog topic over itself), worker heartbeats,
        and the applied offsets (a wiped Redis replayed from the group's committed offsets
        is current from there on: ``replay --rebuild --from-time`` moves them back)."""
        return (self.entity_pattern, self.pattern("item_cooc"), self.pattern("item_stats"),
                self.pattern("item_users"), self.pattern("item_users_hll"),
                self.pattern("item_buyers"), self.pattern("item_buyers_hll"),
                self.pattern("item_carters"), self.pattern("item_newcomers", "*"),
                self.popular, self.trending, self.trending_epoch,
                self.pattern("seen"), self.pattern("attribution"), self.stats,
                self.relist_pending, self.dead_letters, self.freshness_histogram,
                self.experiment_outcomes_pattern())

    def attribution_context(self, context: str) -> str:
        """Impression/click/purchase counts of lists served in one page context."""
        return f"{self.p}attrib:ctx:{context}"

    def idempotency(self, digest: str) -> str:
        """The stored fingerprint of a batch sent with an ``Idempotency-Key``."""
        return f"{self.p}idem:{digest}"

    def rate_limit(self, role: str, key_id: str) -> str:
        """Rate-limit state of one API key for one role."""
        return f"{self.p}rl:{role}:{key_id}"

    # experiments (docs/experiments.md)
    @property
    def experiments(self) -> str:
        """Experiment definitions (hash: id → JSON)."""
        return f"{self.p}experiments"

    def experiment_assign(self, experiment_id: str) -> str:
        """Sticky assignments of one experiment (hash: entity → variant), API-written."""
        return f"{self.p}exp:{experiment_id}:assign"

    def experiment_entities(self, experiment_id: str) -> str:
        """Exposed entities of one experiment (hash: entity → unit, variant, time)."""
        return f"{self.p}expout:{experiment_id}:entities"

    def experiment_units(self, experiment_id: str) -> str:
        """Exposed units (people) of one experiment (hash: unit → variant)."""
        return f"{self.p}expout:{experiment_id}:units"

    def experiment_revenue(self, experiment_id: str) -> str:
        """Revenue per purchasing unit of one experiment (hash, micro-units)."""
        return f"{self.p}expout:{experiment_id}:revenue"

    def experiment_counts(self, experiment_id: str) -> str:
        """Outcome counters per variant of one experiment (hash)."""
        return f"{self.p}expout:{experiment_id}:counts"

    def experiment_seen(self, experiment_id: str, hour_bucket: int | str) -> str:
        """Events counted for one experiment in one event-time hour (dedupe)."""
        return f"{self.p}expout:{experiment_id}:seen:{hour_bucket}"

    def experiment_outcomes_pattern(self, experiment_id: str = "*") -> str:
        """SCAN pattern of the derived outcome keys of one (or every) experiment."""
        return f"{self.p}expout:{experiment_id}:*"

    # patterns (SCAN MATCH)
    @property
    def entity_pattern(self) -> str:
        """SCAN pattern matching every per-entity key (``u:{entity}:...``)."""
        return f"{self.p}u:*"

    def item_pattern(self, item_glob: str = "*") -> str:
        """SCAN pattern of every per-item key (``i:{item}:...``) of ids matching the glob."""
        return f"{self.p}i:{item_glob}:*"

    def pattern(self, builder: str, *args: str) -> str:
        """SCAN pattern of every key a per-id builder makes (``item_stats``: sr:i:*:stats)."""
        head, tail = self.split(builder, *args)
        return f"{head}*{tail}"

    def split(self, builder: str, *args: str) -> tuple[str, str]:
        """``(prefix, suffix)`` around the id of a per-entity/per-item key builder, e.g.
        ``split("item_meta")`` → ``("sr:i:", ":meta")``, for Lua scripts that build keys
        of ids they discover (so key names are still only defined here)."""
        marker = "\x00"
        full = getattr(self, builder)(marker, *args)
        head, _, tail = full.partition(marker)
        return head, tail
