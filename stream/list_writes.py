"""A batch's list writes: entities' recent and personal lists, each with its lifetime,
as ``WRITE_LISTS`` calls (``stream.write_scripts``), and what a rebuild's replay
remembers of them.

Lists expire: those of entities with a new recent list live ``bounds.ttl_s`` from now
(shorter for anonymous ids); a personal list rewritten without one (the post-swap sweep)
keeps its recent list's remaining lifetime and is not written when that list is gone.

A rebuild's replay (``replay=True``) runs beside live workers, whose lists come from whole
histories and so are never older than the replay's: it writes a list only where nobody
else wrote since its own last write (key → SHA-1 of what it wrote there, :data:`LIVE` once
a live worker took it over).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Sequence
from typing import Any, NamedTuple

import orjson

from core.redis_client import Call, Lua
from core.redis_keys import RedisKeys
from stream.bounds import StateBounds
from stream.write_scripts import WRITE_LISTS


class Written(NamedTuple):
    """What a batch's write did (``stream.redis_writer.RedisWriter.write_batch``)."""

    #: Events newly applied (not seen before).
    applied: int
    #: When its lists were written, by Redis's clock (:func:`listed_at`); None when it
    #: wrote none.
    listed_at: float | None = None


#: What a replay notes for a list a live worker wrote since.
LIVE = "live"
#: Entities whose lists one call writes on one standalone Redis (a call blocks Redis
#: while it runs: ~100 entities, a few hundred SETs, stay well under a millisecond).
WRITE_CHUNK_ENTITIES = 100
SCRIPT = Lua(WRITE_LISTS)


class ListWrites:
    """Builds a batch's ``WRITE_LISTS`` calls: one per entity on a Redis Cluster (an
    entity's keys share a slot), one per :data:`WRITE_CHUNK_ENTITIES` entities on one
    standalone Redis (``split`` False: per-command client overhead was ~10 % of the
    worker's CPU with one call per entity). A call has two arguments whatever its size,
    the segments' JSON and the values concatenated: redis-py packs each argument on its
    own, re-joining the protocol buffer each time, and a 100-entity call of 700
    arguments cost ~4.4 µs per entity to pack (0.05 now; the calls with packing 7.4 →
    2.5 µs per entity, best of 40, 4,000 recent lists)."""

    def __init__(self, keys: RedisKeys, bounds: StateBounds, *, split: bool,
                 replay: bool = False) -> None:
        self.keys = keys
        self.bounds = bounds
        self.split = split
        self.replayed: dict[str, str] | None = {} if replay else None

    def calls(self, recs: Iterable[tuple[str, bytes]], recents: Iterable[tuple[str, bytes]],
              anonymous: Collection[str]
              ) -> tuple[list[Call], list[list[tuple[str, bytes]]]]:
        """The calls writing ``recs`` (personal lists) and ``recents`` (recent lists) of
        ``(entity, JSON)``, with each call's ``(key, value)`` written in its reply's order."""
        b = self.keys
        lists: dict[str, list[tuple[str, bytes, str]]] = {}
        fresh = dict(recents)
        for entity, body in fresh.items():
            life = str(1000 * self.bounds.ttl_s(entity in anonymous))
            lists.setdefault(entity, []).append((b.user_recent(entity), body, life))
        for entity, body in recs:
            life = (str(1000 * self.bounds.ttl_s(entity in anonymous)) if entity in fresh
                    else "@ref")
            lists.setdefault(entity, []).append((b.user_recs(entity), body, life))
        segments: list[tuple[list[str], list[Any], list[tuple[str, bytes]]]] = []
        fallback = str(1000 * self.bounds.entity_ttl_s)
        for entity, writes in lists.items():
            if self.replayed is not None:
                writes = [w for w in writes if self.replayed.get(w[0]) != LIVE]
                if not writes:
                    continue
            keys = [key for key, _, _ in writes]
            lives = [life for _, _, life in writes]
            if "@ref" in lives:
                keys.append(b.user_recent(entity))
                lives = [f"@{len(keys)}" if life == "@ref" else life for life in lives]
            guards = ([self.replayed.get(key, "!") for key, _, _ in writes]
                      if self.replayed is not None else [])
            segment = [keys, lives, fallback, guards, [len(body) for _, body, _ in writes]]
            segments.append((keys, segment, [(key, body) for key, body, _ in writes]))
        size = 1 if self.split else WRITE_CHUNK_ENTITIES
        calls, written = [], []
        for start in range(0, len(segments), size):
            chunk = segments[start:start + size]
            wrote = [w for _, _, lists in chunk for w in lists]
            # One standalone Redis: one key routes the call (the script reads the keys
            # from its segments); a cluster's call declares its entity's keys.
            declared = ([k for keys, _, _ in chunk for k in keys] if self.split
                        else chunk[0][0][:1])
            calls.append(SCRIPT.call(declared, [
                orjson.dumps([segment for _, segment, _ in chunk]),
                b"".join(body for _, body in wrote)], any_slot=not self.split))
            written.append(wrote)
        return calls, written

    def note(self, written: Sequence[Sequence[tuple[str, bytes]]],
             replies: Sequence[Any]) -> None:
        """A replay remembers what it wrote, and which lists live workers took over."""
        if self.replayed is None:
            return
        for lists, reply in zip(written, replies, strict=True):
            for (key, body), done in zip(lists, reply[:-1], strict=True):
                if int(done) == 1:
                    self.replayed[key] = hashlib.sha1(body).hexdigest()
                elif int(done) == -1:
                    self.replayed[key] = LIVE


def listed_at(replies: Sequence[Any]) -> float | None:
    """When the lists of a batch's ``WRITE_LISTS`` calls (their replies) were all written,
    by Redis's clock (seconds since the epoch; the last call's, the latest of a
    cluster's nodes); None without a call. That is when a reader sees them: the worker
    counts a list's freshness up to there, not up to when its own event loop resumed
    after the batch's last round trip (up to tens of ms later on a busy box)."""
    return max((int(reply[-1]) / 1e6 for reply in replies), default=None)
