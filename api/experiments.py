"""Serving inside experiments: which variant an entity gets, what it is served, and the
exposure record that makes its outcomes count (docs/experiments.md).

:meth:`Experiments.recommend` wraps every recommendation answer (routes and fast path
alike, through ``api.reader.Reader.recommend``). For a request with an entity in a page
context a running experiment covers, it decides the variant *before* the list is read:

* ``holdout`` answers ``200`` with no items and ``"source": "holdout"`` without reading
  any list (the rate limit is still checked), so a holdout entity can never receive a
  personalized list, whatever the route;
* ``popular`` reads the popular chain instead of the context's chain;
* ``personalized`` reads the normal chain.

Every answer for an enrolled entity carries ``"experiment": {"id", "variant"}`` and a
recommendation id ending in ``.{experiment}:{variant}`` (``core.attribution``).

Assignment is by hash (``recommender.experiments.assign_variant``) and sticky: the first
answer records the variant in ``exp:{id}:assign`` (one small script, which also applies
the enrolment bound ``experiment_max_entities``), first as *pending* (``?variant``). A
pending assignment produces an ``exposure`` record on the events topic, keyed by the
entity so it precedes in the entity's partition every event the entity sends after
seeing the answer; the answer waits for Kafka's acknowledgement, then the assignment is
confirmed. If Kafka does not acknowledge, the variant is served all the same and the
assignment stays pending, so the next answer tries again (the worker counts an entity's
exposure once). Confirmed assignments are also kept in a bounded per-process cache.

Identify (:meth:`Experiments.link`): a user without an assignment inherits the variant
of the anonymous id being linked, and an exposure record for the user names the
anonymous id's *unit*, so the worker counts both ids as one entity.

Definitions are re-read every ``experiment_refresh_s``; a change made through this
process applies to the next answer (:meth:`Experiments.changed`, in memory). When several running
experiments cover a context, the first by id serves it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, get_args

from redis.asyncio import Redis
from redis.exceptions import RedisError

from api.errors import ServiceUnavailable
from api.experiment_store import ExperimentStore
from api.ingest import envelope_messages
from api.list_query import ListBody, ListQuery, RateCheck
from api.metrics import Metrics
from api.producer import EventProducer
from api.ranking import POPULAR_CHAIN
from core.attribution import new_recommendation_id, with_experiment
from core.limits import id_problem
from core.redis_keys import RedisKeys
from core.settings import Settings
from recommender.experiments import assign_variant
from schemas import ExposureInfo, TopicEvent
from schemas.experiments import ExperimentContext

log = logging.getLogger("streamrec.api")

#: Every context an experiment may cover (``schemas.experiments.ExperimentContext``).
ALL_CONTEXTS: frozenset[str] = frozenset(get_args(ExperimentContext))
#: After a failed exposure, serve without trying Kafka again for this long. (The wait
#: for an exposure's acknowledgement, and for the assignment script, is the one an
#: event's POST accepts, ``produce_timeout_s``: a broker slow enough to take more than a
#: second under load is still taking the client's events, so their entity must count.)
EXPOSURE_BREAKER_S = 2.0
#: Confirmed assignments (and entities left out by the enrolment bound) cached per
#: process; the cache is emptied when full.
CACHE_MAX = 100_000
#: Marks a pending assignment; separates an inherited variant from its unit.
PENDING, UNIT_SEP = "?", "\t"

#: KEYS[1] = assignment hash; ARGV = entity, value to record, enrolment bound, ttl (s).
#: The entity's recorded value; else records ARGV[2] unless the bound is reached (nil).
ASSIGN = """
local v = redis.call('HGET', KEYS[1], ARGV[1])
if v then return v end
if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[3]) then return false end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return ARGV[2]
"""

Serve = Callable[[ListQuery], Awaitable[ListBody]]


@dataclass(frozen=True)
class Live:
    """A running experiment as serving needs it."""

    experiment_id: str
    run: str
    names: tuple[str, ...]
    weights: tuple[float, ...]
    serve: dict[str, str]
    contexts: frozenset[str]

    @classmethod
    def of(cls, doc: dict[str, Any]) -> Live:
        """From a stored definition (``api.experiment_store``)."""
        variants = doc["variants"]
        return cls(str(doc["experiment_id"]), str(doc["run"]),
                   tuple(str(v["name"]) for v in variants),
                   tuple(float(v["weight"]) for v in variants),
                   {str(v["name"]): str(v["serve"]) for v in variants},
                   frozenset(doc.get("contexts") or ALL_CONTEXTS))


def parse_assignment(value: str) -> tuple[str, str | None, bool]:
    """``(variant, unit or None, pending)`` of a stored assignment value."""
    pending = value.startswith(PENDING)
    variant, _, unit = value.lstrip(PENDING).partition(UNIT_SEP)
    return variant, unit or None, pending


def _remember(cache: dict[str, str], entity: str, variant: str) -> None:
    """Cache a settled assignment (bounded: emptied when full)."""
    if len(cache) >= CACHE_MAX:
        cache.clear()
    cache[entity] = variant


class Experiments:
    """Variant decisions, exposure records and identify links of one API process."""

    def __init__(self, redis: Redis, producer: EventProducer, settings: Settings,
                 metrics: Metrics, check_rate: Callable[[RateCheck], Awaitable[None]]) -> None:
        self.store = ExperimentStore(redis)
        self._redis = redis
        self._keys = RedisKeys()
        self._producer = producer
        self._settings = settings
        self._metrics = metrics
        self._check_rate = check_rate
        self._assign = redis.register_script(ASSIGN)
        self._by_context: dict[str, Live] = {}
        self._running: tuple[Live, ...] = ()
        self._loaded = False
        self._generation = 0  # changes made through this process (see changed)
        self._due = 0.0
        self._lock = asyncio.Lock()
        self._cache: dict[tuple[str, str], dict[str, str]] = {}
        self._kafka_down_until = 0.0

    # -- definitions -------------------------------------------------------------------
    def invalidate(self) -> None:
        """Re-read the definitions before the next answer (a change made elsewhere; a
        change made through this process is :meth:`changed`)."""
        self._due = 0.0

    def changed(self, experiment_id: str, doc: dict[str, Any] | None) -> None:
        """A definition this process just wrote (``doc``) or deleted (None): the next
        answer uses it, without waiting for a re-read. (A re-read already under way when
        the change was made, or one that times out under load, would otherwise leave the
        answers of the next second tagged by the old set: a deleted experiment's
        variants, a new one not applied.)"""
        self._generation += 1
        if not self._loaded:
            return  # the first read is still to come (or under way: it reads again)
        kept = [live for live in self._running if live.experiment_id != experiment_id]
        fresh = self._live(experiment_id, doc) if doc is not None else None
        self._install(kept + ([fresh] if fresh is not None else []))

    @staticmethod
    def _live(experiment_id: str, doc: dict[str, Any]) -> Live | None:
        """The serving form of a running definition; None when stopped or unreadable."""
        if doc.get("status") != "running" or not doc.get("run"):
            return None
        try:
            return Live.of(doc)
        except (KeyError, TypeError, ValueError) as exc:  # not written by this API
            log.warning("experiment %s has an unreadable definition: %r", experiment_id, exc)
            return None

    async def _load(self) -> None:
        while True:
            generation = self._generation
            docs = await self.store.raw_all()
            if generation == self._generation:
                break  # else a change made here meanwhile may be missing: read again
        loaded = [live for experiment_id, doc in docs.items()
                  if (live := self._live(experiment_id, doc)) is not None]
        self._install(loaded)

    def _install(self, loaded: list[Live]) -> None:
        """Serve ``loaded`` from now on (the first by id serves a shared context)."""
        running = tuple(sorted(loaded, key=lambda live: live.experiment_id))
        by_context: dict[str, Live] = {}
        for live in running:
            for context in live.contexts:
                by_context.setdefault(context, live)
        runs = {(live.experiment_id, live.run) for live in running}
        self._cache = {k: v for k, v in self._cache.items() if k in runs}
        self._running, self._by_context, self._loaded = running, by_context, True

    async def running(self) -> tuple[Live, ...]:
        """The running experiments, re-read when due (and always once before the first
        answer: an experiment defined before this process started must hold from its
        first request on)."""
        now = time.monotonic()
        if now < self._due:
            return self._running
        if self._loaded:
            self._due = now + self._settings.experiment_refresh_s
            try:
                async with asyncio.timeout(0.5):
                    await self._load()
            except (RedisError, OSError, TimeoutError, ValueError, KeyError) as exc:
                log.warning("experiment definitions not refreshed: %r", exc)
            return self._running
        async with self._lock:
            if not self._loaded:
                try:
                    async with asyncio.timeout(1.0):
                        await self._load()
                    self._due = time.monotonic() + self._settings.experiment_refresh_s
                except (RedisError, OSError, TimeoutError, ValueError, KeyError) as exc:
                    log.warning("experiment definitions not readable: %r", exc)
        return self._running

    # -- serving -----------------------------------------------------------------------
    async def recommend(self, query: ListQuery, serve: Serve) -> ListBody:
        """The answer for ``query``: ``serve(query)`` as it is outside experiments, or
        the variant's answer, tagged, for an enrolled entity."""
        if self._due and time.monotonic() < self._due and not self._by_context:
            return await serve(query)  # the common case: no experiment running
        await self.running()
        live = self._by_context.get(query.context)
        entity = query.entity
        if live is None or not entity:
            return await serve(query)
        if query.rate is not None and entity not in self._cache.get(
                (live.experiment_id, live.run), {}):
            # Possibly a first answer: the rate limit first, so that a 429 (no answer)
            # never enrols and exposes the entity. Settled entities keep the cheaper
            # check inside serve, pipelined with the first read.
            await self._check_rate(query.rate)
            query = replace(query, rate=None)
        variant = await self._variant(live, entity)
        if variant is None:
            return await serve(query)
        kind = live.serve.get(variant, "personalized")
        tag = (live.experiment_id, variant)
        if kind == "holdout":
            if query.rate is not None:
                await self._check_rate(query.rate)
            self._metrics.lists_served.labels("holdout").inc()
            body: ListBody = {
                "recommendation_id": new_recommendation_id(query.context, "holdout", tag),
                "source": "holdout", "model_version": "none", "context": query.context,
                "items": []}
            if query.merch is not None and query.merch.explain:
                # explain=true always gains a trace: here no list was read at all.
                body["trace"] = {"sources": [], "dropped": [], "dropped_total": 0}
        else:
            if kind == "popular":
                query = replace(query, chain=POPULAR_CHAIN)
            body = await serve(query)
            body["recommendation_id"] = with_experiment(body["recommendation_id"], *tag)
        body["experiment"] = {"id": live.experiment_id, "variant": variant}
        return body

    async def _variant(self, live: Live, entity: str) -> str | None:
        """The entity's sticky variant (recording and exposing it the first time); None
        when the enrolment bound is reached. When Redis fails: the hash's variant."""
        cache = self._cache.setdefault((live.experiment_id, live.run), {})
        known = cache.get(entity)
        if known is not None:
            return known or None  # "": not enrolled (the bound was reached)
        fresh = assign_variant(live.experiment_id, entity, live.names, live.weights)
        if id_problem(entity) is not None:
            # Reads take any id, but the events topic refuses this one (control
            # characters): no exposure can be recorded, nor any event of its. Served and
            # tagged by hash, not enrolled (an exposure record failing validation was a 500).
            return fresh
        try:
            value = await self._record(live, entity, PENDING + fresh)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("experiment assignment not readable, serving by hash: %r", exc)
            return fresh
        if value is None:
            _remember(cache, entity, "")
            return None
        variant, unit, pending = parse_assignment(value)
        if variant not in live.serve:
            return fresh  # a value no variant has (a hand-edited hash)
        if pending and not await self._expose(live, entity, variant, unit or entity, value):
            return variant
        _remember(cache, entity, variant)
        return variant

    async def _record(self, live: Live, entity: str, value: str) -> str | None:
        """The entity's stored assignment, recording ``value`` when it has none."""
        async with asyncio.timeout(self._settings.produce_timeout_s):
            stored = await self._assign(
                keys=[self._keys.experiment_assign(live.experiment_id)],
                args=[entity, value, self._settings.experiment_max_entities,
                      self._settings.experiment_ttl_s])
        if stored is None:
            return None
        return stored.decode() if isinstance(stored, bytes) else str(stored)

    async def _expose(self, live: Live, entity: str, variant: str, unit: str,
                      value: str) -> bool:
        """Put the entity's exposure on Kafka and confirm its assignment; False (left
        pending) when Kafka or Redis did not take it."""
        if time.monotonic() < self._kafka_down_until:
            return False
        now = time.time()
        event = TopicEvent(event_id=str(uuid.uuid4()), type="exposure", user_id=entity,
                           ts=now, received_at=now,
                           experiment=ExposureInfo(id=live.experiment_id, run=live.run,
                                                   variant=variant, unit=unit))
        topic = self._settings.topic_events
        try:
            async with asyncio.timeout(self._settings.produce_timeout_s):
                partitions = await self._producer.partition_count(topic)
                await self._producer.send_all(
                    topic, envelope_messages([event], partitions=partitions))
            await self._redis.hset(self._keys.experiment_assign(live.experiment_id),
                                   entity, value.lstrip(PENDING))
        except (ServiceUnavailable, RedisError, OSError, TimeoutError) as exc:
            self._kafka_down_until = time.monotonic() + EXPOSURE_BREAKER_S
            log.warning("exposure of %s in %s not recorded (retried on its next answer): "
                        "%r", entity, live.experiment_id, exc)
            return False
        return True

    # -- identify ----------------------------------------------------------------------
    async def link(self, anonymous_id: str, user_id: str) -> int:
        """After ``identify``: in every running experiment where the anonymous id is
        enrolled and the user is not, the user inherits the variant (and counts as the
        same entity). Returns how many links were made; ``ServiceUnavailable`` when they
        could not be recorded (the client retries identify, which is idempotent)."""
        linked = 0
        for live in await self.running():
            key = self._keys.experiment_assign(live.experiment_id)
            try:
                anon_value = await self._redis.hget(key, anonymous_id)
                if anon_value is None:
                    continue
                variant, unit, _ = parse_assignment(str(anon_value))
                wanted = f"{PENDING}{variant}{UNIT_SEP}{unit or anonymous_id}"
                value = await self._record(live, user_id, wanted)
            except (RedisError, OSError, TimeoutError) as exc:
                raise ServiceUnavailable("experiment assignments are unavailable; retry "
                                         "identify", retry_after_s=1) from exc
            if value is None or value != wanted:
                continue  # the user has a variant of its own (or the bound is reached)
            self._kafka_down_until = 0.0  # identify waits for Kafka anyway
            if not await self._expose(live, user_id, variant, unit or anonymous_id, value):
                raise ServiceUnavailable("the experiment exposure of this identify was not "
                                         "recorded; retry identify", retry_after_s=1)
            linked += 1
        return linked
