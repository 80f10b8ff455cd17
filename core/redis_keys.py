"""Every Redis key name streamrec uses: the contract between the writer (stream/) and the
reader (api/). Nothing else builds key strings.

Keys carry Redis Cluster hash tags (``{...}`` picks the slot), the same on one Redis and
on a cluster, so one code path serves both: everything one Lua call touches shares a tag.
``{s}``: the **shared** slot, what every request reads (item metadata and stock, popular,
trending, the catalog columns and category sets, promotions, the model pointer) and the
counters: serving decorates and filters any list in one call.
``{<n>}``: an **entity bucket** (CRC-32 of the id modulo :data:`ENTITY_BUCKETS`): one
shopper's keys. ``{i<n>}``: an **item bucket** (modulo :data:`ITEM_BUCKETS`: a batch
touching thousands of items makes at most that many calls). ``{rl}``: the rate limiter
(a request's buckets are charged atomically). Ids never sit inside a tag.

Layout (``p`` = prefix, default ``sr:``; ``E``/``I``: the id's bucket tags; every ``u:``
key but ``anons`` expires ``entity_ttl_s`` — ``anonymous_ttl_s`` for anonymous ids —
after the entity's last write, ``anons`` the longer of the two after its own
(``core.limits.links_ttl_s``), every ``expout:`` key ``experiment_ttl_s`` after its own):

================================  ======  ==================================================
key                               type    content
================================  ======  ==================================================
p u:{E}:{entity}:recs             string  personal list ``{"v", "ts", "items": [[id, score]]}``
p u:{E}:{entity}:recent           string  JSON list of recent item ids, newest first
p u:{E}:{entity}:bought           zset    item → time: the newest ``bought_max`` purchases
p u:{E}:{entity}:cart             zset    item → time: the newest ``cart_max`` cart items
p u:{E}:{entity}:basket           zset    item → time: the last 30 carted or bought items
p u:{E}:{e}:cart_gone|basket_gone zset    item → time it was removed (order-safe state)
p u:{E}:{user}:anons              set     anonymous ids identified as it (≤ 1000; forgotten with it)
p i:{I}:{item}:similar            string  ``{"v", "items": [[id, score]]}`` of the retrain
p i:{I}:{item}:cooc               zset    streaming co-occurrence partner → weight
p i:{I}:{item}:stats              hash    event type → count (exact)
p i:{I}:{item}:users[_hll]        set     first ``distinct_exact_max`` entities; HLL of all
p i:{I}:{item}:buyers[_hll]       set     the same for purchasers (repeat-purchase rate)
p i:{I}:{item}:carters[_gone]     zset    entity → time: the last 200 carters; removals
p seen:{s}:{hour}                 set     :func:`seen_member` of the events applied (dedupe)
p seen:{tag}:{hour}               set     markers of the outbox entries a slot applied
p {s}:outbox:{hour}               hash    member → an event's effects on other slots, until
                                          applied (``stream.slot_apply``)
p {s}:i:{item}:meta               hash    name, price, currency, category, in_stock,
                                          deleted ("1"/"0"), properties, updated_at
p {s}:i:{item}:newcomers:{w}:{n}  string  weight newcomers of partition n added in window w
p {s}:items:unavailable|deleted   set     out of stock or deleted / deleted item ids
p {s}:popular                     zset    item → all-time weighted score (top N kept)
p {s}:trending, {s}:trending:t0   zset    item → forward-decayed score; its epoch (string)
p {s}:items:category|price|row    hash    item → category / price / serving row: catalog columns
p {s}:items:by_price              zset    item → price: the price column, for price bands
p {s}:items:columns|cache-probe   string  the columns' version once whole; near-cache probe
p {s}:cat:{category}:items        set     the items of this category and those below it
p {s}:items:new                   zset    item → listing time: the newest ranked_items_max
p {s}:promotions[:rev]            hash    id → JSON promotion (api.promotions); string: writes
p {s}:forgotten[:pending]         hash    entity → epoch s forgotten (:pending: not swept yet)
p {s}:anons:ttl                   string  set once every ``anons`` set has its expiry
p {s}:model:current               string  live model version
p {s}:stats                       hash    counters: processed, applied, dead_lettered, ...
p {s}:stats:workers               zset    worker id → last heartbeat (epoch s)
p {s}:stats:freshness             hash    freshness histogram: bucket bound (ms) → count
p {s}:stats:dead-letters          list    JSON reasons of the last dead letters
p {s}:relist:pending              zset    entity → since when its list waits (coalesced)
p {s}:forwarded                   hash    events partition → offset its forwards are logged below
p {s}:replay:ends                 hash    partition → events end offset at the last replay
p {s}:attrib:[ctx:]{name}         hash    event type → count per list origin / context
p idem:{digest}                   string  fingerprint of an Idempotency-Key batch (expires)
p model:{v}:item_ids|item_factors string  JSON ids in factor-row order; ``numpy.save`` bytes
p model:{v}:similar_rows          hash    item → neighbours as int32 rows and micro-scores
p model:{v}:meta                  hash    trained_at, n_users, n_items, n_events, ...
p model:train-lock, history       string  holder while a retrain runs; list of its facts
p worker:{id}                     hash    heartbeat: model_version, processed, partitions
p sentinel, rebuild-lock          string  set by a completed rebuild; holder of a rebuild
p applied:{topic}; sync:{tag}     hash    partition → next applied offset; (string) WAIT
p experiments                     hash    experiment id → JSON definition
p {s}:experiments:rev             string  writes of ``experiments`` (api.experiment_defs)
p exp:{x:id}:assign               hash    entity → variant (API-written, bounded, expires)
p expout:{x:id}:entities|units    hash    entity → unit, variant, exposure; unit → variant
p expout:{x:id}:revenue|counts    hash    unit → micro-units; ``{variant}|{metric}`` → count
p expout:{x:id}:seen:{hour}       set     members of the events counted (their dedupe)
p rl:{rl}:{role}:{key id}         string  GCRA state (theoretical arrival time; expires)
================================  ======  ==================================================
"""

from __future__ import annotations

import hashlib

from core.key_tags import (
    ANY,
    BUCKET_PROBE,
    ENTITY_BUCKETS,
    ITEM_BUCKETS,
    RATE_LIMIT_TAG,
    SHARED_TAG,
    bucket_parts,
    entity_tag,
    experiment_tag,
    item_tag,
    tag_of,
)
from core.merch_keys import MerchKeys

__all__ = ["ENTITY_BUCKETS", "ITEM_BUCKETS", "RATE_LIMIT_TAG", "SHARED_TAG", "RedisKeys",
           "seen_member", "tag_of"]


class _Shared:
    """A key of the shared slot, read as an attribute of :class:`RedisKeys`."""

    def __init__(self, suffix: str, doc: str) -> None:
        self.suffix, self.__doc__ = suffix, doc

    def __get__(self, keys: RedisKeys, owner: type | None = None) -> str:
        return f"{keys.s}{self.suffix}"


def seen_member(namespace: str, event_id: str) -> str:
    """The dedupe-set member of an event: a digest of its id within its namespace (the
    anonymous or user id): equal ids of two shoppers never collide, members are small."""
    raw = f"{namespace}\x00{event_id}".encode("utf-8", errors="surrogatepass")
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


class RedisKeys(MerchKeys):
    """Builds key names under one prefix, so several deployments can share a Redis
    (the keys of merchandising and forgetting: :class:`core.merch_keys.MerchKeys`)."""

    __slots__ = ("p", "s")

    def __init__(self, prefix: str = "sr:") -> None:
        self.p = prefix
        self.s = f"{prefix}{{{SHARED_TAG}}}:"  # the shared slot's keys start so

    # tags (core.key_tags)
    entity_tag = staticmethod(entity_tag)
    item_tag = staticmethod(item_tag)
    experiment_tag = staticmethod(experiment_tag)

    def _u(self, entity: str, suffix: str) -> str:
        return f"{self.p}u:{{{self.entity_tag(entity)}}}:{entity}:{suffix}"

    def _i(self, item: str, suffix: str) -> str:
        return f"{self.p}i:{{{self.item_tag(item)}}}:{item}:{suffix}"

    # users / anonymous ids
    def user_recs(self, entity: str) -> str:
        """Personal list of a user or anonymous id."""
        return self._u(entity, "recs")

    def user_recent(self, entity: str) -> str:
        """Recent items of a user or anonymous id (newest first)."""
        return self._u(entity, "recent")

    def user_bought(self, entity: str) -> str:
        """Items a user purchased."""
        return self._u(entity, "bought")

    def user_cart(self, entity: str) -> str:
        """Items in a user's cart now."""
        return self._u(entity, "cart")

    def user_basket(self, entity: str) -> str:
        """A user's recently carted or purchased items (by event time)."""
        return self._u(entity, "basket")

    def user_cart_gone(self, entity: str) -> str:
        """Items removed from the cart → when (a late addition does not undo them)."""
        return self._u(entity, "cart_gone")

    def user_basket_gone(self, entity: str) -> str:
        """Items removed from the basket → when."""
        return self._u(entity, "basket_gone")

    def entity_keys(self, entity: str) -> list[str]:
        """Every per-entity key of one user or anonymous id (what forgetting deletes;
        one slot: they share the entity's tag)."""
        return [self._u(entity, suffix) for suffix in ("recs", "recent", "bought", "cart",
                "basket", "cart_gone", "basket_gone", "anons")]

    # items
    def item_similar(self, item: str) -> str:
        """Model-based similar-item list."""
        return self._i(item, "similar")

    def item_cooc(self, item: str) -> str:
        """Streaming co-occurrence neighbours."""
        return self._i(item, "cooc")

    def item_meta(self, item: str) -> str:
        """Catalog metadata and stock (in the shared slot: serving reads it per item)."""
        return f"{self.s}i:{item}:meta"

    def item_stats(self, item: str) -> str:
        """Per-type interaction counts."""
        return self._i(item, "stats")

    def item_users(self, item: str) -> str:
        """Distinct entities that interacted with an item."""
        return self._i(item, "users")

    def item_users_hll(self, item: str) -> str:
        """HyperLogLog of the entities that interacted with an item."""
        return self._i(item, "users_hll")

    def item_buyers(self, item: str) -> str:
        """Distinct entities that purchased an item (the first ``distinct_exact_max``)."""
        return self._i(item, "buyers")

    def item_buyers_hll(self, item: str) -> str:
        """HyperLogLog of the entities that purchased an item."""
        return self._i(item, "buyers_hll")

    def item_newcomers(self, item: str, window: int | str, partition: int | str) -> str:
        """Weight not yet trusted ids of one ``events`` partition added to an item in one
        abuse window: that partition's share of the newcomer budget (shared slot)."""
        return f"{self.s}i:{item}:newcomers:{window}:{partition}"

    def outbox(self, hour_bucket: int | str) -> str:
        """Seen member → an event's effects on other slots until applied there, per hour."""
        return f"{self.s}outbox:{hour_bucket}"

    def item_carters(self, item: str) -> str:
        """Recent entities that carted or purchased an item (by event time)."""
        return self._i(item, "carters")

    def item_carters_gone(self, item: str) -> str:
        """Entities that took the item out of their cart → when."""
        return self._i(item, "carters_gone")

    # shared data
    unavailable = _Shared("items:unavailable", "Out-of-stock or deleted items.")
    deleted = _Shared("items:deleted", "Deleted items.")
    popular = _Shared("popular", "All-time weighted popularity.")
    trending = _Shared("trending", "Forward-decayed trending score.")
    trending_epoch = _Shared("trending:t0", "Reference time of the trending scores.")

    def seen(self, tag: str, hour_bucket: int | str) -> str:
        """Events applied per event-time hour: dedupe (shared slot), else outbox markers."""
        return f"{self.p}seen:{{{tag}}}:{hour_bucket}"

    # model
    model_current = _Shared("model:current", "Live model version pointer.")

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

    stats = _Shared("stats", "Pipeline-wide counters.")
    worker_registry = _Shared("stats:workers", "Worker id → its last heartbeat time.")
    freshness_histogram = _Shared("stats:freshness", "Freshness histogram of the last samples.")
    dead_letters = _Shared("stats:dead-letters", "The last dead-lettered messages' reasons.")
    relist_pending = _Shared("relist:pending", "Entities whose list waits (coalesced).")
    forwarded = _Shared("forwarded", "Events partition → offset below which forwards are logged.")
    replay_ends = _Shared("replay:ends", "Partition → events end offset at the last replay.")

    def attribution(self, source: str) -> str:
        """Impression/click/purchase counts of lists of one origin."""
        return f"{self.s}attrib:{source}"

    @property
    def sentinel(self) -> str:
        """Present when Redis holds the state of the whole log (see stream/rebuild.py)."""
        return f"{self.p}sentinel"

    @property
    def rebuild_lock(self) -> str:
        """Held while a rebuild from the log runs."""
        return f"{self.p}rebuild-lock"

    def sync(self, tag: str) -> str:
        """A scratch key on the master of ``tag``'s slot (``core.redis_client``'s WAIT)."""
        return f"{self.p}sync:{{{tag}}}"

    def applied(self, topic: str) -> str:
        """Per partition of ``topic``, the next offset the workers have applied to Redis."""
        return f"{self.p}applied:{topic}"

    def derived_patterns(self) -> tuple[str, ...]:
        """SCAN patterns of the log-derived state a rebuild wipes and replays. Kept: experiment
        definitions, assignments, models, catalog, heartbeats, applied offsets, replay marks."""
        return (self.entity_pattern, self.pattern("item_cooc"), self.pattern("item_stats"),
                self.pattern("item_users"), self.pattern("item_users_hll"),
                self.pattern("item_buyers"), self.pattern("item_buyers_hll"),
                self.pattern("item_carters"), self.pattern("item_carters_gone"),
                self.pattern("item_newcomers", "*", "*"), self.popular, self.trending,
                self.trending_epoch, self.pattern("seen", "*"), self.pattern("outbox"),
                self.pattern("attribution"), self.stats, self.relist_pending,
                self.dead_letters, self.freshness_histogram,
                self.experiment_outcomes_pattern())

    def attribution_context(self, context: str) -> str:
        """Impression/click/purchase counts of lists served in one page context."""
        return f"{self.s}attrib:ctx:{context}"

    def idempotency(self, digest: str) -> str:
        """The stored fingerprint of a batch sent with an ``Idempotency-Key``."""
        return f"{self.p}idem:{digest}"

    def rate_limit(self, role: str, key_id: str) -> str:
        """Rate-limit state of one API key for one role (one slot: charged together)."""
        return f"{self.p}rl:{{{RATE_LIMIT_TAG}}}:{role}:{key_id}"

    # experiments (docs/experiments.md)
    @property
    def experiments(self) -> str:
        """Experiment definitions (hash: id → JSON)."""
        return f"{self.p}experiments"

    def _x(self, kind: str, experiment_id: str, suffix: str) -> str:
        return f"{self.p}{kind}:{{{self.experiment_tag(experiment_id)}}}:{suffix}"

    def experiment_assign(self, experiment_id: str) -> str:
        """Sticky assignments of one experiment (hash: entity → variant), API-written."""
        return self._x("exp", experiment_id, "assign")

    def experiment_entities(self, experiment_id: str) -> str:
        """Exposed entities of one experiment (hash: entity → unit, variant, time)."""
        return self._x("expout", experiment_id, "entities")

    def experiment_units(self, experiment_id: str) -> str:
        """Exposed units (people) of one experiment (hash: unit → variant)."""
        return self._x("expout", experiment_id, "units")

    def experiment_revenue(self, experiment_id: str) -> str:
        """Revenue per purchasing unit of one experiment (hash, micro-units)."""
        return self._x("expout", experiment_id, "revenue")

    def experiment_counts(self, experiment_id: str) -> str:
        """Outcome counters per variant of one experiment (hash)."""
        return self._x("expout", experiment_id, "counts")

    def experiment_seen(self, experiment_id: str, hour_bucket: int | str) -> str:
        """Events counted for one experiment in one event-time hour (dedupe)."""
        return self._x("expout", experiment_id, f"seen:{hour_bucket}")

    def experiment_outcomes_pattern(self, experiment_id: str = "*") -> str:
        """SCAN pattern of the derived outcome keys of one (or every) experiment."""
        tag = "x:*" if experiment_id == "*" else self.experiment_tag(experiment_id)
        return f"{self.p}expout:{{{tag}}}:*"

    # patterns (SCAN MATCH)
    @property
    def entity_pattern(self) -> str:
        """SCAN pattern matching every per-entity key (``u:{E}:{entity}:...``)."""
        return f"{self.p}u:*"

    def item_pattern(self, item_glob: str = "*") -> str:
        """SCAN pattern of the item-bucket keys of the items whose id matches the glob."""
        return f"{self.p}i:{{*}}:{item_glob}:*"

    def pattern(self, builder: str, *args: str) -> str:
        """SCAN pattern of every key a builder makes: ``"sr:i:{*}:*:stats"``, ..."""
        full = getattr(self, builder)(ANY, *args)
        head, _, tail = full.partition(ANY)
        return f"{head}*{tail}"

    def split(self, builder: str, *args: str) -> tuple[str, str]:
        """``(prefix, suffix)`` around the id of a per-id key builder whose slot does not
        depend on the id, e.g. ``split("item_meta")`` → ``("sr:{s}:i:", ":meta")``, for Lua
        scripts that build keys of ids they discover within their own slot (so key names
        are still only defined here). Builders with a per-id bucket raise ValueError."""
        full = getattr(self, builder)(ANY, *args)
        head, _, tail = full.partition(ANY)
        if "{*}" in head:
            raise ValueError(f"{builder}: the slot depends on the id; build keys in Python")
        return head, tail

    def bucketed(self, builder: str) -> list[str | int]:
        """``[head, middle, tail, buckets]`` of a per-item or per-entity key builder
        (:func:`core.key_tags.bucket_parts`), for ``api/lua/inline.lua``."""
        make = getattr(self, builder)
        return bucket_parts(builder, make(ANY), make(BUCKET_PROBE), BUCKET_PROBE)
