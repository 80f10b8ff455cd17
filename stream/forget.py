"""Forgetting users and anonymous ids in the stream (API.md "Merchandising",
docs/privacy.md).

``DELETE /v1/users/{id}`` (``api.forget``) puts a :class:`schemas.merch.ForgetRecord` per
id on the compacted ``forgotten`` topic, a ``forget`` event per id on ``events`` and the
ids into Redis's ``forgotten`` hash. The one rule (:func:`is_forgotten`): **an event
naming a forgotten id (as user or anonymous id) that was received at or before the
forget is never applied**. Everything that reads the log applies it before history:

* the worker screens every batch against the hash (:meth:`Forgetting.screen`, one
  ``HMGET`` per batch, before histories and experiment outcomes are read) and, on a
  ``forget`` event -- in order with the id's own events, on the partition that owns
  them -- deletes the id's history from its table, its Redis keys, its experiment
  assignments and exposure records, the id from the exact distinct-user sets and
  recent and removed carters of the items it touched and from the anonymous ids of the users it was
  identified as (then, in the background, of every item and user:
  :meth:`Forgetting.sweep`, which leaves alone where the id's events after the forget
  put it: :meth:`Forgetting.claim`; the ids pending for it are written down in Redis
  first, so the worker that owns one takes its sweep up after a restart:
  :meth:`Forgetting.resume`);
* a rebuild from the log restores the hash from the topic first (:func:`restore`);
* a retrain drops the events while reading (:func:`read_forgotten`, ``stream.retrain``)
  and writes no list of an id forgotten while it trained (:func:`forgotten_since`);
* ``streamrec replay`` restores the hash before a rebuild and re-drives records without
  the forgotten ids' events (:func:`scrub`).

An id that comes back after being forgotten starts over: its later events apply.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

import orjson
import redis
import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.exceptions import RedisError

from core import kafka_tools
from core.redis_keys import RedisKeys
from core.settings import Settings
from recommender.history import History
from schemas import EventEnvelope, TopicEvent
from schemas.merch import ForgetRecord
from stream.decode import PoisonMessage, decode_events

log = logging.getLogger("streamrec.worker")

#: Fields per HMGET/HSET of the forgotten hash, keys per SCAN step of the sweep.
CHUNK = 1000
#: Keys one id's events after its forget may claim while its sweep runs (beyond them the
#: sweep may remove a later membership: forgetting errs towards more).
CLAIMS_MAX = 10 * CHUNK
#: Strikes an id off the pending sweeps (``RedisKeys.forgotten_pending``) when its entry
#: still holds the forget just swept, not a later one (another worker's sweep to come).
SWEPT = """if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0"""


class Store(Protocol):
    """What forgetting needs of ``stream.processor.HistoryStore``."""

    def get(self, entity: str) -> dict[str, Any] | None:
        """The stored history of an entity, or None."""

    def delete(self, entity: str, partition: int) -> None:
        """Forget an entity's history (``partition``: that of the message saying so)."""


def is_forgotten(user_id: str | None, anonymous_id: str | None, received: float,
                 forgotten: Mapping[str, float]) -> bool:
    """The rule: True when either id was forgotten at or after ``received``."""
    for who in (user_id, anonymous_id):
        if who is not None:
            at = forgotten.get(who)
            if at is not None and received <= at:
                return True
    return False


def dropped(ev: TopicEvent, forgotten: Mapping[str, float]) -> bool:
    """Whether an event is never applied (:func:`dropped_fields` of its fields)."""
    return dropped_fields(ev.type, ev.user_id, ev.anonymous_id, ev.receive_time, forgotten)


def dropped_fields(kind: str, user_id: str | None, anonymous_id: str | None,
                   received: float, forgotten: Mapping[str, float]) -> bool:
    """The rule for readers holding plain fields: a ``forget`` event itself, or
    :func:`is_forgotten` (``received``: the event's receive time)."""
    return kind == "forget" or (bool(forgotten) and is_forgotten(user_id, anonymous_id,
                                                                  received, forgotten))


def read_forgotten(settings: Settings) -> dict[str, float]:
    """Every forgotten id on the ``forgotten`` topic with its latest forget time (a
    missing topic holds none; malformed records are skipped)."""
    out: dict[str, float] = {}
    for record in kafka_tools.read_topic(settings, settings.topic_forgotten):
        try:
            rec = ForgetRecord.model_validate_json(record.value or b"")
        except ValidationError:
            continue
        out[rec.entity] = max(rec.at, out.get(rec.entity, 0.0))
    return out


async def restore(client: aioredis.Redis, keys: RedisKeys, forgotten: Mapping[str, float]
                  ) -> None:
    """Put the topic's forgotten ids into Redis's hash (before any event is replayed)."""
    items = list(forgotten.items())
    for start in range(0, len(items), CHUNK):
        await client.hset(keys.forgotten, mapping={e: repr(at) for e, at in
                                                   items[start:start + CHUNK]})


def restore_sync(settings: Settings, keys: RedisKeys | None = None) -> int:
    """:func:`restore` from the topic with a synchronous client (``streamrec replay``);
    returns how many ids."""
    from core.redis_client import sync_client

    keys = keys or RedisKeys()
    forgotten = read_forgotten(settings)
    client = sync_client(settings)
    try:
        items = list(forgotten.items())
        for start in range(0, len(items), CHUNK):
            client.hset(keys.forgotten, mapping={e: repr(at) for e, at in
                                                 items[start:start + CHUNK]})
    finally:
        client.close()
    return len(forgotten)


def forgotten_since(client: redis.Redis, keys: RedisKeys, entities: Sequence[str],
                    since: float) -> set[str]:
    """Those of ``entities`` forgotten at or after ``since`` (a retrain that read the log
    before then must not write their lists)."""
    gone: set[str] = set()
    for start in range(0, len(entities), CHUNK):
        chunk = list(entities[start:start + CHUNK])
        for entity, raw in zip(chunk, client.hmget(keys.forgotten, chunk), strict=True):
            if raw is not None and float(raw) >= since:
                gone.add(entity)
    return gone


def scrub(value: bytes | None, forgotten: Mapping[str, float]) -> bytes | None:
    """A record of ``events`` without the events of forgotten ids: the same bytes when
    it has none, None when nothing is left (records that do not decode stay as they
    are: the worker dead-letters them)."""
    if not forgotten or value is None:
        return value
    try:
        events = decode_events(value, partition=0, offset=0)
    except PoisonMessage:
        return value
    kept = [ev for ev in events if ev.type == "forget" or not is_forgotten(
        ev.user_id, ev.anonymous_id, ev.receive_time, forgotten)]
    if len(kept) == len(events):
        return value
    if not kept:
        return None
    return orjson.dumps(EventEnvelope(events=kept).model_dump(exclude_none=True))


class Forgetting:
    """The worker's side: screens batches, erases forgotten ids, sweeps item sets."""

    def __init__(self, client: aioredis.Redis, keys: RedisKeys, *, sweep: bool = True) -> None:
        self.r = client
        self.keys = keys
        self._sweep_on = sweep
        #: Ids waiting for the sweep → their forget time as written in Redis.
        self._pending: dict[str, str] = {}
        self._sweeping: asyncio.Task[int] | None = None
        #: Ids pending or under way in the sweep → the keys their events after the forget
        #: added them to (:meth:`claim`), which the sweep leaves alone.
        self._claims: dict[str, set[str]] = {}
        #: Held by the sweep while it decides and removes one group of keys.
        self._step = asyncio.Lock()
        self._swept = client.register_script(SWEPT)
        #: Ids erased by this process (for logs and tests).
        self.erased = 0

    async def screen(self, batch: Sequence[tuple[TopicEvent, int]], store: Store
                     ) -> list[tuple[TopicEvent, int]]:
        """The batch without the events the rule drops, after erasing every id a
        ``forget`` event of the batch names (its later events then start over)."""
        ids = {who for ev, _ in batch for who in (ev.user_id, ev.anonymous_id) if who}
        if not ids:
            return list(batch)
        names = list(ids)
        times: dict[str, float] = {}
        for start in range(0, len(names), CHUNK):
            chunk = names[start:start + CHUNK]
            for who, raw in zip(chunk, await self.r.hmget(self.keys.forgotten, chunk),
                                strict=True):
                if raw is not None:
                    times[who] = float(raw)
        forgets = [(ev, part) for ev, part in batch if ev.type == "forget"]
        if not times and not forgets:
            return list(batch)
        for ev, part in forgets:
            times[ev.entity] = max(times.get(ev.entity, 0.0), ev.receive_time)
            await self.erase(ev.entity, times[ev.entity], store, part)
        return [(ev, part) for ev, part in batch if not dropped(ev, times)]

    async def erase(self, entity: str, at: float, store: Store, partition: int) -> None:
        """Delete ``entity``'s history, Redis keys and item-set memberships now."""
        k = self.keys
        if self._sweep_on:  # before any of it: a worker stopped from here on leaves it
            await self.r.hset(k.forgotten_pending, entity, repr(at))  # to the next owner
        hist = History.from_dict(store.get(entity))
        store.delete(entity, partition)
        pipe = self.r.pipeline(transaction=False)
        for key in (k.user_bought(entity), k.user_cart(entity), k.user_basket(entity)):
            pipe.zrange(key, 0, -1)
        pipe.hkeys(k.experiments)
        *held, experiments = await pipe.execute()
        experiments = await self._enrolled_by(entity, at, experiments)
        items = {*hist.item_ids(), *hist.bought, *(i.decode() if isinstance(i, bytes) else i
                                                  for group in held for i in group)}
        pipe = self.r.pipeline(transaction=False)
        pipe.hset(k.forgotten, entity, repr(at))
        pipe.execute_command("UNLINK", *k.entity_keys(entity))  # one slot; queued on a cluster too
        for user in hist.links:  # an anonymous id forgotten alone: its users name it no more
            pipe.srem(k.user_anons(user), entity)
        for item in items:
            pipe.srem(k.item_users(item), entity)
            pipe.srem(k.item_buyers(item), entity)
            pipe.zrem(k.item_carters(item), entity)
            pipe.zrem(k.item_carters_gone(item), entity)
        for exp in experiments:  # its assignment and exposure; variant totals are kept
            for key in (k.experiment_assign(exp), k.experiment_entities(exp),
                        k.experiment_units(exp), k.experiment_revenue(exp)):
                pipe.hdel(key, entity)
        done = await pipe.execute()
        assigned = done[len(done) - 4 * len(experiments)::4] if experiments else []
        if any(assigned):
            # an assignment went: every API process drops the assignments it cached (the
            # definitions' write count moves), so the id, back, is enrolled again
            await self.r.incr(k.experiments_rev)
        self.erased += 1
        log.info("forgot %s: history, lists, cart and purchases (%d items' sets)", entity,
                 len(items))
        if self._sweep_on:
            self._pending[entity] = repr(at)
            self._claims[entity] = set()  # a new forget: its earlier return is forgotten too
            self._start()

    async def _enrolled_by(self, entity: str, at: float, experiments: Sequence[Any]
                           ) -> list[str]:
        """The experiments whose enrolment of ``entity`` the forget at ``at`` erases: all
        but those it was exposed in after ``at``. A rebuild replays the forget after the
        id came back; erasing that return's enrolment made its exposure, read next,
        enrol the id again (one more entity in the variant per rebuild)."""
        names = [raw.decode() if isinstance(raw, bytes) else raw for raw in experiments]
        if not names:
            return []
        pipe = self.r.pipeline(transaction=False)
        for exp in names:
            pipe.hget(self.keys.experiment_entities(exp), entity)
        erased = []
        for exp, info in zip(names, await pipe.execute(), strict=True):
            text = info.decode() if isinstance(info, bytes) else info
            try:  # "unit \t variant \t exposure time" (stream.experiments)
                exposed = float(text.rsplit("\t", 1)[1]) if text else None
            except (IndexError, ValueError):
                exposed = None
            if exposed is None or exposed <= at:
                erased.append(exp)
        return erased

    def _start(self) -> None:
        if self._pending and (self._sweeping is None or self._sweeping.done()):
            self._sweeping = asyncio.create_task(self.sweep(), name="forget-sweep")

    async def resume(self, owned: Callable[[str], bool] = lambda _entity: True) -> int:
        """Take up the sweeps pending in Redis (``RedisKeys.forgotten_pending``) of the ids
        ``owned`` says are on this worker's partitions and no sweep of this process is
        doing: left by a worker stopped mid-sweep (killed, crashed, redeployed) or by
        this one's sweep that Redis failed; how many. What the id's events after its
        forget added before then is unknown here (:meth:`claim` is in memory): the sweep
        may remove it too, forgetting errs towards more; claims from now on are kept."""
        if not self._sweep_on:
            return 0
        alive = self._sweeping is not None and not self._sweeping.done()
        taken = 0
        async for raw, at in self.r.hscan_iter(self.keys.forgotten_pending, count=CHUNK):
            entity = raw.decode() if isinstance(raw, bytes) else raw
            if entity in self._pending or (alive and entity in self._claims) or not owned(
                    entity):
                continue
            self._pending[entity] = at.decode() if isinstance(at, bytes) else at
            self._claims.setdefault(entity, set())  # this process's claims still hold
            taken += 1
        self._start()
        if taken:
            log.info("resumed the sweep of %d forgotten ids", taken)
        return taken

    @property
    def sweeping(self) -> bool:
        """Whether some id is pending or under way in the sweep (:meth:`claim` counts)."""
        return bool(self._claims)

    def claim(self, added: Iterable[tuple[str, str]]) -> None:
        """Record ``(member, key)`` memberships that events applied after a forget add
        (``stream.item_ops.added_members``), before their write is sent: the sweep of
        that id leaves those keys alone (the id came back: they are its new history)."""
        for member, key in added:
            held = self._claims.get(member)
            if held is not None and len(held) < CLAIMS_MAX:
                held.add(key)

    async def settled(self) -> None:
        """Wait for the sweep's removal in flight: a write sent after this lands after it,
        and the sweep's next removal sees every :meth:`claim` made before."""
        if self._step.locked():
            async with self._step:
                pass

    async def sweep(self) -> int:
        """Remove the pending ids from every item's exact distinct-user and buyer sets,
        recent carters and removed carters (memberships older than the history the erase
        read) and from every user's anonymous ids (links the API recorded that the
        history lacks), except where an id's events after its forget put it
        (:meth:`claim`); returns the keys visited. Runs in the background, one at a
        time; Redis failing stops it, the ids left pending there (:meth:`resume`)."""
        visited = 0
        try:
            while self._pending:
                taken, self._pending = self._pending, {}
                entities = sorted(taken)
                for builder, op in (("item_users", "srem"), ("item_buyers", "srem"),
                                    ("item_carters", "zrem"), ("item_carters_gone", "zrem"),
                                    ("user_anons", "srem")):
                    visited += await self._sweep_keys(self.keys.pattern(builder), op,
                                                      entities)
                for entity in entities:
                    if entity not in self._pending:  # forgotten again meanwhile: swept again
                        await self._swept(keys=[self.keys.forgotten_pending],
                                          args=[entity, taken[entity]])
                        self._claims.pop(entity, None)
        except (RedisError, OSError) as exc:
            log.warning("the sweep of forgotten ids stopped (%s): resumed later",
                        type(exc).__name__)
        return visited

    async def _sweep_keys(self, pattern: str, op: str, entities: Iterable[str]) -> int:
        members = list(entities)
        batch: list[Any] = []
        visited = 0
        async for key in self.r.scan_iter(match=pattern, count=CHUNK):
            batch.append(key)
            if len(batch) >= CHUNK:
                visited += await self._remove(batch, op, members)
                batch = []
        if batch:
            visited += await self._remove(batch, op, members)
        return visited

    async def _remove(self, keys: list[Any], op: str, members: list[str]) -> int:
        # Decided and sent under the lock the processor waits on (:meth:`settled`) before
        # it sends a write: a membership claimed from now on was not removed here, or
        # its write lands after this removal.
        async with self._step:
            pipe = self.r.pipeline(transaction=False)
            queued = False
            for key in keys:
                name = key.decode() if isinstance(key, bytes) else key
                left = [m for m in members if name not in self._claims.get(m, ())]
                if left:
                    getattr(pipe, op)(key, *left)
                    queued = True
            if queued:
                await pipe.execute(raise_on_error=False)  # a key of another type is not ours
        return len(keys)
