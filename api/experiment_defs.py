"""The running experiments' definitions, as one API process keeps a copy of them.

The copy is read from Redis (``api.experiment_store``) before the first answer, re-read
every ``experiment_refresh_s``, changed in memory by this process's own writes
(:meth:`Definitions.changed`) and re-read when an answer finds that another process wrote
since (:meth:`Definitions.catch_up`): every answer reads the definitions' write count
(``RedisKeys.experiments_rev``, counted up after each write) in its first round trip
(:meth:`Definitions.check`, through ``api.promotions.Checked``), which
:meth:`Definitions.saw` records for that answer alone (a context variable).
:mod:`api.experiments` decides variants with it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, get_args

from redis.asyncio import Redis
from redis.exceptions import RedisError

from api.experiment_store import ExperimentStore
from core.redis_client import Call, command, write_count
from core.redis_keys import RedisKeys
from core.settings import Settings
from schemas.experiments import ExperimentContext

log = logging.getLogger("streamrec.api")

#: Every context an experiment may cover (``schemas.experiments.ExperimentContext``).
ALL_CONTEXTS: frozenset[str] = frozenset(get_args(ExperimentContext))

#: The definitions' write count the current answer read (:meth:`Definitions.saw`).
_SEEN: ContextVar[str | None] = ContextVar("streamrec_experiments_seen", default=None)


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


class Definitions:
    """This process's copy of the running experiments, by context."""

    def __init__(self, redis: Redis, settings: Settings,
                 on_install: Callable[[set[tuple[str, str]], bool], None]) -> None:
        """``on_install``: called with the ``(experiment id, run)`` pairs of every copy
        installed (the assignment cache keeps only theirs) and whether the write count
        moved since the last read (then the cache is dropped: the count also moves when
        the worker erases a forgotten id's assignments, ``stream.forget``)."""
        self.store = ExperimentStore(redis)
        self._redis = redis
        self._keys = RedisKeys()
        self._settings = settings
        self._on_install = on_install
        #: The experiment serving each context (the first running one by id).
        self.by_context: dict[str, Live] = {}
        self._running: tuple[Live, ...] = ()
        self._loaded = False
        self._generation = 0  # changes made through this process (see changed)
        #: The write count the copy was read at ("": never read).
        self.rev = ""
        self._due = 0.0
        self._lock = asyncio.Lock()

    @property
    def quiet(self) -> bool:
        """Nothing runs and the copy is not due for a re-read: the common case."""
        return bool(self._due) and time.monotonic() < self._due and not self.by_context

    @staticmethod
    def seen() -> str | None:
        """The write count the current answer read (None: nothing read yet)."""
        return _SEEN.get()

    @staticmethod
    def forget_seen() -> None:
        """At the start of an answer: nothing read yet."""
        _SEEN.set(None)

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
            # the count first: the hash read after it holds at least the writes it counts
            rev = write_count(await self._redis.get(self._keys.experiments_rev))
            docs = await self.store.raw_all()
            if generation == self._generation:
                break  # else a change made here meanwhile may be missing: read again
        loaded = [live for experiment_id, doc in docs.items()
                  if (live := self._live(experiment_id, doc)) is not None]
        moved = self._loaded and rev != self.rev
        self.rev = rev
        self._install(loaded, moved=moved)

    def _install(self, loaded: list[Live], *, moved: bool = False) -> None:
        """Serve ``loaded`` from now on (the first by id serves a shared context);
        ``moved``: read at a write count other than the copy's."""
        running = tuple(sorted(loaded, key=lambda live: live.experiment_id))
        by_context: dict[str, Live] = {}
        for live in running:
            for context in live.contexts:
                by_context.setdefault(context, live)
        self._running, self.by_context, self._loaded = running, by_context, True
        self._on_install({(live.experiment_id, live.run) for live in running}, moved)

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

    # -- definitions written by other processes ---------------------------------------
    def check(self) -> Call:
        """The read of the write count an answer's list makes in its first round trip."""
        return command("GET", self._keys.experiments_rev)

    @staticmethod
    def saw(raw: Any) -> None:
        """The write count the current answer's list read (``check``'s reply)."""
        _SEEN.set(write_count(raw))

    async def read_count(self) -> str | None:
        """The write count, read on its own (by an answer that read no list: a holdout);
        None when Redis cannot tell."""
        try:
            async with asyncio.timeout(0.5):
                return write_count(await self._redis.get(self._keys.experiments_rev))
        except (RedisError, OSError, TimeoutError) as exc:
            log.debug("experiments' write count not read: %r", exc)
            return None

    async def catch_up(self, seen: str) -> None:
        """Re-read the copy when it is not at the write count ``seen`` (one re-read at a
        time; those waiting for it find the copy current)."""
        async with self._lock:
            if self.rev == seen:
                return
            try:
                async with asyncio.timeout(1.0):
                    await self._load()
            except (RedisError, OSError, TimeoutError, ValueError, KeyError) as exc:
                log.warning("experiment definitions not refreshed: %r", exc)
