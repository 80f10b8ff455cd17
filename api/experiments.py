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
exposure once). Confirmed assignments are also kept in a bounded per-process cache,
dropped when the definitions' write count moves (also moved by the worker when it
erases a forgotten id's assignment, ``stream.forget``).

Identify (:meth:`Experiments.link`): a user without an assignment inherits the variant
of the anonymous id being linked, and an exposure record for the user names the
anonymous id's *unit*, so the worker counts both ids as one entity.

A definitions change holds for every answer any process starts after the change's
``200`` (``api.experiment_defs``): each answer reads the definitions' write count with
its list (a holdout answer, which reads no list, on its own), and when another process
wrote since the copy was read, the copy is re-read and, if the experiment serving the
answer's context changed, the answer is made again (:meth:`Experiments.recommend`).
When several running experiments cover a context, the first by id serves it.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace

from redis.asyncio import Redis
from redis.exceptions import RedisError

from api.errors import ServiceUnavailable
from api.experiment_defs import Definitions, Live
from api.ingest import envelope_messages
from api.list_query import ListBody, ListQuery, RateCheck
from api.producer import EventProducer
from api.ranking import POPULAR_CHAIN
from core.attribution import new_recommendation_id, with_experiment
from core.limits import id_problem
from core.redis_keys import RedisKeys
from core.settings import Settings
from recommender.experiments import assign_variant
from schemas import ExposureInfo, TopicEvent

log = logging.getLogger("streamrec.api")

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
#: KEYS[1] = assignment hash; ARGV = entity, pending value, confirmed value. Confirms the
#: entity's assignment only while it is still the pending one recorded: a hash wiped by a
#: deletion in the meantime is not made again (it would have no TTL, kept for ever).
CONFIRM = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
"""

Serve = Callable[[ListQuery], Awaitable[ListBody]]


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
                 check_rate: Callable[[RateCheck], Awaitable[None]]) -> None:
        self.defs = Definitions(redis, settings, self._keep_cached)
        self.store = self.defs.store
        self._redis = redis
        self._keys = RedisKeys()
        self._producer = producer
        self._settings = settings
        self._check_rate = check_rate
        self._assign = redis.register_script(ASSIGN)
        self._confirm = redis.register_script(CONFIRM)
        self._cache: dict[tuple[str, str], dict[str, str]] = {}
        self._dropped = 0  # times the cache was dropped (see _keep_cached)
        self._kafka_down_until = 0.0
        self.changed, self.running = self.defs.changed, self.defs.running
        self.check, self.saw = self.defs.check, self.defs.saw

    def _keep_cached(self, runs: set[tuple[str, str]], moved: bool) -> None:
        """Keep the cached assignments of the running experiments' ``runs`` alone; none
        when the definitions' write count ``moved`` (a forgotten id's assignment may be
        gone: back, it is enrolled and exposed again, docs/privacy.md)."""
        if moved:
            self._cache = {}
            self._dropped += 1
        else:
            self._cache = {k: v for k, v in self._cache.items() if k in runs}

    # -- serving -----------------------------------------------------------------------
    async def recommend(self, query: ListQuery, serve: Serve) -> ListBody:
        """The answer for ``query``: ``serve(query)`` as it is outside experiments, or
        the variant's answer, tagged, for an enrolled entity; made again when another
        process changed the definitions this answer was decided by."""
        defs = self.defs
        defs.forget_seen()
        dropped = self._dropped
        body, rev, live = await self._answer(query, serve)
        seen = defs.seen()
        if seen is None and body.get("source") == "holdout":
            seen = await defs.read_count()
        if seen is None or seen == rev:
            return body  # decided by the current definitions (or Redis could not tell)
        await defs.catch_up(seen)
        if defs.by_context.get(query.context) == live and (
                live is None or not query.entity or self._dropped == dropped):
            return body  # (a dropped cache may have decided it: a forgotten id's variant)
        return (await self._answer(replace(query, rate=None), serve))[0]  # rate checked

    async def _answer(self, query: ListQuery, serve: Serve
                      ) -> tuple[ListBody, str, Live | None]:
        """:meth:`recommend`'s answer, with the write count and the experiment that
        decided it."""
        defs = self.defs
        rev = defs.rev
        if defs.quiet:
            return await serve(query), rev, None  # the common case: no experiment running
        await defs.running()
        rev = defs.rev
        live = defs.by_context.get(query.context)
        entity = query.entity
        if live is None or not entity:
            return await serve(query), rev, live
        if query.rate is not None and entity not in self._cache.get(
                (live.experiment_id, live.run), {}):
            # Possibly a first answer: the rate limit first, so that a 429 (no answer)
            # never enrols and exposes the entity. Settled entities keep the cheaper
            # check inside serve, pipelined with the first read.
            await self._check_rate(query.rate)
            query = replace(query, rate=None)
        variant = await self._variant(live, entity)
        if variant is None:
            return await serve(query), rev, live
        kind = live.serve.get(variant, "personalized")
        tag = (live.experiment_id, variant)
        if kind == "holdout":
            if query.rate is not None:
                await self._check_rate(query.rate)
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
        return body, rev, live

    async def peek(self, entity: str, context: str) -> dict[str, str] | None:
        """``{"id", "variant"}`` of the entity's recorded assignment in the experiment
        serving ``context``, or None; reads only (an operator's lookup must not enrol)."""
        await self.defs.running()
        live = self.defs.by_context.get(context)
        if live is None:
            return None
        value = await self._redis.hget(self._keys.experiment_assign(live.experiment_id), entity)
        if value is None:
            return None
        variant, _, _ = parse_assignment(value.decode() if isinstance(value, bytes) else value)
        return {"id": live.experiment_id, "variant": variant}

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
            await self._confirm(keys=[self._keys.experiment_assign(live.experiment_id)],
                                args=[entity, value, value.lstrip(PENDING)])
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
