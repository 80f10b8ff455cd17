"""Experiment outcomes from the stream: exposures and every later event of an exposed
entity, counted once per event id (docs/experiments.md).

The API puts an ``exposure`` record on the events topic when an entity gets its first
answer in an experiment, keyed by the entity, so it reaches the worker ahead of every
event the entity sends after seeing the answer (same partition, in order). Per batch,
one Lua script (:data:`APPLY_OUTCOMES`):

* an exposure enrols its entity (``expout:{id}:entities``: unit, variant, exposure time)
  and, the first time its *unit* is seen, adds 1 to the variant's ``entities``. The unit
  is the entity itself, or — for a user who inherited an anonymous id's variant at
  identify — that anonymous id, so the two ids count as one entity;
* an impression, click, add-to-cart or purchase of an enrolled entity, received at or
  after its exposure (API receive time) and before the experiment stopped, adds to its
  variant's counters — once per event id, by the experiment's own seen-sets (the
  ``seen_member`` of ``core.redis_keys``, as the other counted effects), so a
  redelivered batch, a worker killed between this script and the batch's other writes,
  a forwarded copy of an identified anonymous event, and a replay change nothing;
* a purchase adds ``price × quantity`` (integer micro-units, exact) to the variant's
  revenue and to its unit's, keeps ``Σ revenue²`` per variant (for the interval of
  revenue per entity) and counts the unit as a purchaser the first time.

Records of an experiment whose definition is gone, or was re-created (another ``run``),
count nothing. An experiment's keys share one hash slot (``core.redis_keys``), so the
script runs once per defined experiment, with that experiment's definition as an
argument (read beforehand, with the list of ids). Everything is derived from the log:
``streamrec replay --rebuild`` wipes ``expout:*`` and rebuilds it, definitions and
assignments (``experiments``, ``exp:{id}:assign``) are kept.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import orjson
import redis.asyncio as aioredis

from core.redis_client import Lua, command, run_batch
from core.redis_keys import RedisKeys, seen_member
from recommender.handover import HANDOVER_COPY_PREFIXES
from recommender.revenue import MICRO  # the report reads what this writes
from schemas import TopicEvent
from stream.redis_writer import hour_of

#: Event types an experiment counts (report fields impressions, clicks, add_to_cart,
#: purchases).
COUNTED = frozenset({"impression", "click", "add_to_cart", "purchase"})
#: One purchase adds at most this many micro-units (10⁹ currency units): integer
#: revenue stays exact and far from overflow, whatever a client posts.
MAX_EVENT_MICRO = 10**15
#: Seconds between re-reads of "is any experiment defined" (none: no script call).
REFRESH_S = 2.0

APPLY_OUTCOMES = """
-- KEYS = one experiment's entities, units, revenue, counts hashes (one slot);
-- ARGV[1] = its definition (JSON; '' = gone); ARGV[2] = JSON [id, seen head, seen tail];
-- ARGV[3] = JSON records in batch order:
--   ["x", experiment, run, entity, unit, variant, received] (exposure) or
--   ["e", seen member, hour, entity, type, revenue micro-units, received] (event);
-- ARGV[4] = seen-set ttl (s); ARGV[5] = ttl of the other keys (s).
-- Returns how many (event, experiment) outcomes were counted.
local live = {}
local x = cjson.decode(ARGV[2])
if ARGV[1] ~= '' then
  local ok, d = pcall(cjson.decode, ARGV[1])
  if ok and type(d) == 'table' and d.run then
    local stop = tonumber(d.stopped_at)
    live[1] = {id = x[1], run = d.run, stop = stop, ent = KEYS[1], units = KEYS[2],
               rev = KEYS[3], counts = KEYS[4], seen = {x[2], x[3]}, touched = false}
  end
end
local by_id = {}
for _, e in ipairs(live) do by_id[e.id] = e end
local seen_ttl, ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local counted = 0
local SEP = '\\t'

local function expose(r)
  local e = by_id[r[2]]
  if not e or e.run ~= r[3] then return end
  local received = tonumber(r[7])
  if e.stop and received >= e.stop then return end
  if redis.call('HEXISTS', e.ent, r[4]) == 1 then return end
  redis.call('HSET', e.ent, r[4], r[5] .. SEP .. r[6] .. SEP .. string.format('%.17g', received))
  if redis.call('HSETNX', e.units, r[5], r[6]) == 1 then
    redis.call('HINCRBY', e.counts, r[6] .. '|entities', 1)
  end
  e.touched = true
end

local function count(e, r)
  local info = redis.call('HGET', e.ent, r[4])
  if not info then return end
  local unit, variant, at = string.match(info, '^(.*)\\t([^\\t]*)\\t([^\\t]*)$')
  if not unit then return end
  local received = tonumber(r[7])
  if received < tonumber(at) then return end
  if e.stop and received >= e.stop then return end
  local seen = e.seen[1] .. r[3] .. e.seen[2]
  -- the hour before too: a retry restamped after the top of the hour (stream.slot_apply)
  if redis.call('SISMEMBER', e.seen[1] .. (tonumber(r[3]) - 1) .. e.seen[2], r[2]) == 1
     or redis.call('SADD', seen, r[2]) == 0 then return end
  redis.call('EXPIRE', seen, seen_ttl)
  redis.call('HINCRBY', e.counts, variant .. '|' .. r[5], 1)
  counted = counted + 1
  e.touched = true
  if r[5] ~= 'purchase' then return end
  local micro = string.format('%d', r[6])
  local first = redis.call('HEXISTS', e.rev, unit) == 0
  local total = redis.pcall('HINCRBY', e.rev, unit, micro)
  if first then redis.call('HINCRBY', e.counts, variant .. '|purchasers', 1) end
  if type(total) ~= 'number' then return end  -- overflow: the revenue stops growing
  redis.pcall('HINCRBY', e.counts, variant .. '|revenue', micro)
  local old = (total - r[6]) / 1e6
  local delta = (2 * old + r[6] / 1e6) * (r[6] / 1e6)
  redis.pcall('HINCRBYFLOAT', e.counts, variant .. '|revenue_sq', string.format('%.17g', delta))
end

for _, r in ipairs(cjson.decode(ARGV[3])) do
  if r[1] == 'x' then
    expose(r)
  else
    for _, e in ipairs(live) do count(e, r) end
  end
end
for _, e in ipairs(live) do
  if e.touched then
    for _, k in ipairs({e.ent, e.units, e.rev, e.counts}) do redis.call('EXPIRE', k, ttl) end
  end
end
return counted
"""


def revenue_micro(event: TopicEvent) -> int:
    """``price × quantity`` of a purchase in micro-units (0 without a price; capped at
    :data:`MAX_EVENT_MICRO`). The product is rounded once: a price with more than six
    decimals, rounded before the multiplication, was off by up to half a micro-unit
    times the quantity (0.0000015 × 1,000,000 counted 2.0, not 1.5)."""
    if event.type != "purchase" or event.price is None:
        return 0
    return min(MAX_EVENT_MICRO, round(event.price * (event.quantity or 1) * MICRO))


def outcome_records(events: Iterable[TopicEvent]) -> tuple[list[list[Any]], set[str]]:
    """The script's records of a batch (exposures and counted events, in order) and the
    experiment ids its exposures name."""
    records: list[list[Any]] = []
    exposed: set[str] = set()
    for ev in events:
        if ev.type == "exposure" and ev.experiment is not None:
            x = ev.experiment
            records.append(["x", x.id, x.run, ev.user_id, x.unit, x.variant, ev.receive_time])
            exposed.add(x.id)
        elif ev.type in COUNTED and not (ev.forwarded
                                         and ev.event_id.startswith(HANDOVER_COPY_PREFIXES)):
            # (a purchase or cart addition an identify hands over without its event id:
            # the original was counted, or not, as itself)
            records.append(["e", seen_member(ev.dedupe_namespace, ev.event_id),
                            hour_of(ev.ts), ev.entity, ev.type, revenue_micro(ev),
                            ev.receive_time])
    return records, exposed


class ExperimentOutcomes:
    """Counts a batch's experiment outcomes (one script call; none while no experiment
    is defined)."""

    def __init__(self, client: aioredis.Redis, keys: RedisKeys, *, dedupe_ttl_s: int,
                 ttl_s: int) -> None:
        self._r = client
        self._keys = keys
        self._seen_ttl = dedupe_ttl_s
        self._ttl = ttl_s
        self._script = Lua(APPLY_OUTCOMES)
        self._ids: list[str] = []
        self._due = 0.0

    async def _experiment_ids(self, exposed: set[str]) -> list[str]:
        """The defined experiment ids (re-read every :data:`REFRESH_S`, and at once when
        an exposure names one not known yet)."""
        if time.monotonic() >= self._due or not exposed <= set(self._ids):
            raw = await self._r.hkeys(self._keys.experiments)
            self._ids = sorted(k.decode() if isinstance(k, bytes) else str(k) for k in raw)
            self._due = time.monotonic() + REFRESH_S
        return self._ids

    def _keys_of(self, experiment_id: str) -> list[str]:
        k = self._keys
        return [k.experiment_entities(experiment_id), k.experiment_units(experiment_id),
                k.experiment_revenue(experiment_id), k.experiment_counts(experiment_id)]

    def _seen(self, experiment_id: str) -> list[str]:
        head, _, tail = self._keys.experiment_seen(experiment_id, "\x00").partition("\x00")
        return [experiment_id, head, tail]

    async def apply(self, events: Iterable[TopicEvent]) -> int:
        """Count the batch's outcomes; returns how many (event, experiment) pairs counted."""
        records, exposed = outcome_records(events)
        if not records:
            return 0
        ids = await self._experiment_ids(exposed)
        if not ids:
            return 0
        # The definitions as they are now (a stop or a deletion applies at once), then
        # one call per experiment (its keys share a slot), in one round trip.
        definitions = await run_batch(self._r, [command("HMGET", self._keys.experiments,
                                                        *ids)])
        body = orjson.dumps(records)
        calls = [self._script.call(self._keys_of(i), [
            definition or "", orjson.dumps(self._seen(i)), body, self._seen_ttl, self._ttl])
            for i, definition in zip(ids, definitions[0], strict=True)]
        return sum(int(reply) for reply in await run_batch(self._r, calls))
