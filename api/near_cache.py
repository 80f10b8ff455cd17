"""The near cache: served list bodies kept in the API process, exact through Redis's
client-side-caching invalidation (``CLIENT TRACKING``; :mod:`api.tracking_conn`).

Why: at the merchandising mix's maximum throughput the API spent ~190 µs of CPU and
Redis ~170 µs per list on 2 cores, the bare endpoint ~115 µs (docs/benchmarks.md). A
list asked for again, unchanged, costs neither the serve script nor its post-processing
(:func:`api.reply_items.scored_items`, ~60 % of ``Reader.read`` on a repeat) when the
*finished* body is kept: ``source``, ``model_version``, ``context`` and ``items``.
The per-answer ``recommendation_id`` is minted on every hit, and the rate limit is
still checked (``Reader._admit``).

What is kept, keyed by everything that shapes the answer (the :class:`ListQuery` without
``rate`` and ``probe``, plus the ids of the promotions active for it): every list but
``explain=true`` answers (their trace is per answer) and single-source lists with a
trending epoch (``/v1/trending``: their scores decay with the clock). At most
``serve_cache_entries`` lists, least recently used dropped first.

Exactness: the serve connection tracks in ``BCAST`` mode the key prefixes serving reads
(:func:`tracked_prefixes`), so Redis reports *every* write to them, whoever makes it
(the worker's scripts, another API process, an expiry, ``FLUSHALL``). Default (read-key)
mode is not enough: Redis 7.0.15 and 6.2.14 (measured) track only the keys a script
*declares*, and the serve script builds most of its keys itself. Each reported key drops
what may depend on it (:class:`KeyMap`): an entity's own lists drop its entries, an
item's neighbours the entries anchored on it, popular / trending / the newest items /
co-occurrence / carters / purchase counts the entries whose chain *reached* that link
(:func:`reached`: a link after the list was full was never read), the promotions' and
experiments' write counts refresh those copies; any other key under the prefixes
(catalog, stock, the model pointer, an unknown key) and a null (flush) drop everything.

Ordering: a report comes on another socket than the reply it races. An entry is stored
only when no report of what it depends on arrived while its read was in flight
(:attr:`NearCache.epoch`, the last :data:`REPORT_LOG` reports remembered); a write after
the read is reported after it, and drops the entry once stored. A hit is served only
when its entry is still there (no report of what it depends on dropped it) after its
rate limit was checked (mostly a leased token, no I/O) and two turns of the event loop
after it: a write
acknowledged to its writer before the request came is reported before (Redis sends the
report in the same turn of its loop), so the hit is not served. While
either connection is down, or tracking is not confirmed, the cache is empty and unused.
With nothing kept and no cacheable read in flight, a report only refreshes the
promotions' and experiments' copies: an API that only ingests (a burst, a backfill)
pays a dictionary lookup per reported key, not its parsing.
A hit's ``items`` is their JSON text (an ``orjson.Fragment``): every caller of a
cacheable answer writes the body with ``orjson.dumps`` (the fast path, the routes), and
the text is not serialised again per hit. Memory, measured with ``tracemalloc``: about
3.7 KB per 10-item list, key, entry and indexes included (7.3 KB with the items as
objects), so ~185 MB per API process at the default bound.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson

from api.list_query import ListBody, ListQuery
from api.ranking import SourceSpec
from core.attribution import new_recommendation_id
from core.redis_keys import RedisKeys

#: Link kinds whose data lives in keys shared by many lists → the feed ``reached`` names
#: (the session link reads the recent items' co-occurrence; a category promotion popular).
FEEDS = {"popular": "popular", "trending": "trending", "new_items": "new_items",
         "session": "cooc", "complements": "complements", "buy_again": "buy_again",
         "promoted": "popular"}
#: What an invalidated key asks of the cache: drop by entity / anchor / feed, refresh.
ALL, IGNORE, PROMOTIONS, EXPERIMENTS = "all", "ignore", "promotions", "experiments"
#: Reports remembered for reads in flight (what each dropped): a read that began before
#: the oldest one remembered is not kept. Reads take milliseconds; reports come in the
#: hundreds a second while the worker writes.
REPORT_LOG = 4096


class _Uncounted:
    """Stands in for a metric when none is given (unit tests)."""

    def inc(self, amount: float = 1) -> None:
        """Count nothing."""

    def set(self, value: float) -> None:
        """Record nothing."""


@dataclass(frozen=True)
class Entry:
    """One served list without its ``recommendation_id``, and what it depends on."""

    head: ListBody
    origin: str  # the recommendation id's origin segment
    entity: str | None
    anchor: str | None
    feeds: frozenset[str]


def tracked_prefixes(keys: RedisKeys) -> list[str]:
    """The key prefixes serving reads (none overlapping: Redis refuses that)."""
    s = keys.s
    return [f"{keys.p}u:", f"{keys.p}i:", f"{s}i:", f"{s}items:", f"{s}cat:",
            f"{s}popular", f"{s}trending", f"{s}promotions", f"{s}experiments:rev",
            f"{s}model:current"]


class KeyMap:
    """What a reported key name drops (pure; names come from :class:`RedisKeys`)."""

    #: Per-entity / per-item key suffixes no serving read touches (written per event).
    _QUIET_ENTITY = frozenset({"cart_gone", "basket_gone", "anons"})
    _QUIET_ITEM = frozenset({"users", "users_hll", "carters_gone"})

    def __init__(self, keys: RedisKeys) -> None:
        s = keys.s
        self._u, self._i, self._meta = f"{keys.p}u:{{", f"{keys.p}i:{{", f"{s}i:"
        #: Key names whose impact is fixed (feeds, promotions, experiments, the probe).
        self.exact = {
            keys.popular: ("feed", "popular"), keys.trending: ("feed", "trending"),
            keys.trending_epoch: ("feed", "trending"), keys.new_items: ("feed", "new_items"),
            keys.promotions: (PROMOTIONS, ""), keys.promotions_rev: (PROMOTIONS, ""),
            keys.experiments_rev: (EXPERIMENTS, ""), keys.serve_cache_probe: (IGNORE, ""),
        }

    @staticmethod
    def _split(key: str, head: str) -> tuple[str, str] | None:
        """``(id, suffix)`` of ``{head}{tag}}:{id}:{suffix}`` (ids may hold ``:``)."""
        close = key.find("}:", len(head))
        rest = key[close + 2:] if close >= 0 else ""
        ident, sep, suffix = rest.rpartition(":")
        return (ident, suffix) if close >= 0 and sep else None

    def impact(self, key: str) -> tuple[str, str]:
        """``(what, which)``: ``("entity", id)``, ``("anchor", id)``, ``("feed", kind)``,
        or ``(ALL | IGNORE | PROMOTIONS | EXPERIMENTS, "")``."""
        found = self.exact.get(key)
        if found is not None:
            return found
        if key.startswith(self._u) and (parts := self._split(key, self._u)):
            entity, suffix = parts
            if suffix in ("recs", "recent", "bought", "cart"):
                return "entity", entity
            if suffix == "basket":  # a carter's basket: complements of others' carts
                return "feed", "complements"
            return (IGNORE, "") if suffix in self._QUIET_ENTITY else (ALL, "")
        if key.startswith(self._i) and (parts := self._split(key, self._i)):
            item, suffix = parts
            if suffix in ("similar", "cooc"):  # cooc: also the session link (anchor, feed)
                return "anchor", item
            if suffix == "carters":
                return "feed", "complements"
            if suffix in ("stats", "buyers", "buyers_hll"):
                return "feed", "buy_again"
            return (IGNORE, "") if suffix in self._QUIET_ITEM else (ALL, "")
        if key.startswith(self._meta) and ":newcomers:" in key:
            return IGNORE, ""  # the abuse budget of new ids, written per event
        return ALL, ""


def reached(chain: Sequence[SourceSpec], reply: Sequence[Any], section: tuple[int, int],
            n: int) -> frozenset[str]:
    """The shared feeds a serve-script ``reply`` read: a link is read while fewer than
    its cap (``n``; ``2n`` for a re-ranked link) items were chosen before it."""
    first, end = section
    before = [0] * (len(chain) + 1)
    for at in range(first, end, 11):
        link = int(reply[at])
        if 0 < link <= len(chain):
            before[link] += 1
    out, chosen = set(), 0
    for index, spec in enumerate(chain, start=1):
        if chosen < (2 * n if spec.rerank else n) and spec.kind in FEEDS:
            out.add(FEEDS[spec.kind])
        chosen += before[index]
    return frozenset(out)


def cacheable(query: ListQuery) -> bool:
    """Whether ``query``'s answer may be kept (not an explain answer)."""
    return query.merch is None or not query.merch.explain


def cache_key(query: ListQuery, promotion_ids: Iterable[str]) -> tuple[Any, ...]:
    """Everything that shapes ``query``'s answer, ``rate`` and ``probe`` left out."""
    return (query.chain, query.n, query.entity, query.anchor, query.exclude,
            query.raw_scores, query.context, query.merch, tuple(promotion_ids))


class NearCache:
    """A bounded LRU of served lists, with indexes for what each depends on."""

    def __init__(self, max_entries: int, keys: RedisKeys,
                 on_change: Callable[[str], None] = lambda what: None,
                 metrics: Any = None) -> None:
        """``on_change(PROMOTIONS | EXPERIMENTS)``: another process wrote those;
        ``metrics``: ``api.metrics.Metrics`` (its ``near_*`` children are counted)."""
        self.max_entries = max_entries
        self.keymap = KeyMap(keys)
        self._on_change = on_change
        self._entries: OrderedDict[tuple[Any, ...], Entry] = OrderedDict()
        self._by: dict[tuple[str, str], set[tuple[Any, ...]]] = {}
        #: Counts reports that matter and flushes (one per key): a read that saw it
        #: move is stored only when none of those touched what it depends on.
        self.epoch = 0
        #: ``(epoch, deps dropped or None for everything)``, one per epoch, newest last.
        self._log: deque[tuple[int, tuple[tuple[str, str], ...] | None]] = deque(
            maxlen=REPORT_LOG)
        #: True while tracking is confirmed on both connections.
        self.live = False
        #: Cacheable reads in flight (:func:`serve`): the reports they must hear of.
        self.reading = 0
        #: When the last cacheable list was asked for (monotonic; tracking rests after a
        #: while without one, and from the start until the first: an API started for a
        #: burst or a backfill never tracks; ``api.tracking_conn.DORMANT_AFTER_S``).
        self.last_read = -math.inf
        nop = _Uncounted()
        self._hits, self._misses, self._reports, self._flushes, self._size = (
            getattr(metrics, name, nop) for name in (
                "near_hits", "near_misses", "near_reports", "near_flushes", "near_entries"))

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple[Any, ...]) -> Entry | None:
        """The entry of ``key`` (now the most recently used), or None."""
        entry = self._entries.get(key) if self.live else None
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def counted(self, hit: bool) -> None:
        """Count one cacheable list as answered from the cache (``hit``) or not."""
        (self._hits if hit else self._misses).inc()

    def _deps(self, entry: Entry) -> list[tuple[str, str]]:
        deps = [("feed", feed) for feed in entry.feeds]
        if entry.entity:
            deps.append(("entity", entry.entity))
        if entry.anchor:
            deps.append(("anchor", entry.anchor))
        return deps

    def holds(self, key: tuple[Any, ...], entry: Entry) -> bool:
        """Whether ``entry`` is still ``key``'s: no report that matters to it (nor a
        flush, nor the LRU) dropped it since it was got."""
        return self.live and self._entries.get(key) is entry

    def _touched(self, entry: Entry, epoch: int) -> bool:
        """Whether a report since ``epoch`` dropped what ``entry`` depends on (or may
        have: everything, or reports too old to be remembered)."""
        log = self._log
        if epoch == self.epoch:
            return False
        if not log or log[0][0] > epoch + 1:
            return True
        deps = set(self._deps(entry))
        for at, dropped in reversed(log):
            if at <= epoch:
                break
            if dropped is None or not deps.isdisjoint(dropped):
                return True
        return False

    def put(self, key: tuple[Any, ...], entry: Entry, epoch: int) -> bool:
        """Keep ``entry`` unless a report since ``epoch`` (its read's start) dropped
        what it depends on."""
        if not self.live or self.max_entries <= 0 or self._touched(entry, epoch):
            return False
        self._drop(key)
        self._entries[key] = entry
        for dep in self._deps(entry):
            self._by.setdefault(dep, set()).add(key)
        while len(self._entries) > self.max_entries:
            self._drop(next(iter(self._entries)))
        self._size.set(len(self._entries))
        return True

    def _drop(self, key: tuple[Any, ...]) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        for dep in self._deps(entry):
            keys = self._by.get(dep)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by[dep]

    def flush(self) -> None:
        """Drop every entry (and every read in flight)."""
        self.epoch += 1
        self._log.append((self.epoch, None))
        self._flushes.inc()
        self._entries.clear()
        self._by.clear()
        self._size.set(0)

    def invalidated(self, names: Sequence[str] | None) -> None:
        """A report: the keys written (None: the database was flushed). A report that
        empties the cache does so once, however many of its keys call for it (a catalog
        upload's rows)."""
        self._reports.inc()
        if names is None:
            self.flush()
            return
        if not self._entries and not self.reading:
            # Nothing kept, no read to keep in flight: only the promotions' and the
            # experiments' copies care. A burst's ~6 reported keys per event cost an
            # ingesting API ~20 µs per event in this loop (py-spy, 2026-12-07).
            exact = self.keymap.exact
            for name in names:
                found = exact.get(name)
                if found is not None and found[0] in (PROMOTIONS, EXPERIMENTS):
                    self._on_change(found[0])
            return
        flushed = False
        for name in names:
            what, which = self.keymap.impact(name)
            if what == IGNORE:
                continue
            if what in (ALL, PROMOTIONS, EXPERIMENTS):
                if what != ALL:
                    self._on_change(what)
                if not flushed:
                    self.flush()
                    flushed = True
                continue
            if flushed:
                continue  # emptied by this report: nothing left to drop, reads voided
            deps = [(what, which)]
            if what == "anchor" and name.endswith(":cooc"):
                deps.append(("feed", "cooc"))  # a recent item's neighbours (session)
            # one epoch per key that drops something; reads in flight check it in the log
            self.epoch += 1
            self._log.append((self.epoch, tuple(deps)))
            for dep in deps:
                for key in list(self._by.get(dep, ())):
                    self._drop(key)
        self._size.set(len(self._entries))


async def serve(cache: NearCache, query: ListQuery, *,
                promotion_ids: Callable[[str], list[str] | None],
                read: Callable[[ListQuery, dict[str, Any]], Awaitable[ListBody]],
                admit: Callable[[Any], Awaitable[None]]) -> ListBody:
    """``query``'s answer from the cache (rate limit checked by ``admit``), else from
    ``read`` (which fills its note: promotion ids, chain, reply, section), then kept."""
    ids = promotion_ids(query.context)  # None: the promotions copy is being refreshed
    keepable = cacheable(query)
    if keepable:  # a list the cache serves: tracking stays on, or wakes (DORMANT_AFTER_S)
        cache.last_read = time.monotonic()
    key = cache_key(query, ids) if ids is not None and keepable else None
    entry = cache.get(key) if key is not None else None
    if entry is not None:
        # Reports Redis sent before this request's writes were acknowledged are read
        # first: two turns of the loop (the rate check is mostly a leased token, no I/O;
        # when it takes a lease its reply comes after those reports anyway).
        if query.rate is not None:
            await admit(query.rate)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        if key is not None and cache.holds(key, entry):
            cache.counted(True)
            return {"recommendation_id": new_recommendation_id(query.context, entry.origin),
                    **entry.head}
        query = replace(query, rate=None)  # (checked) a report came: read it from Redis
    if key is not None:
        cache.counted(False)
    epoch, note = cache.epoch, dict[str, Any]()
    cache.reading += key is not None
    try:
        body = await read(query, note)
    finally:
        cache.reading -= key is not None
    reply = note.get("reply")
    # not kept: promotions re-read meanwhile (another process wrote), a clock-decayed list
    if key is None or reply is None or note.get("promotions_moved") or (
            query.raw_scores and reply[2]):
        return body
    head = {k: v for k, v in body.items() if k != "recommendation_id"}
    # (as text: orjson's bytes keep an ~8 KB buffer each, a str just its length)
    head["items"] = orjson.Fragment(orjson.dumps(body["items"]).decode())
    feeds = reached(note["chain"], reply, note["section"], query.n)
    cache.put(key, Entry(head, note["origin"], query.entity, query.anchor, feeds), epoch)
    return body
