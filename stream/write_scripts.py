"""The Lua scripts through which the worker writes a batch (``stream.redis_writer``).

On a Redis Cluster every call touches the keys of one hash slot (``core.redis_keys``);
on one standalone Redis a call may span slots (whole events, many entities' lists, one
read of every candidate list), which saves client work per command. A batch's counted
effects are applied by :mod:`stream.slot_apply` with ``APPLY_SLOT``, first in the shared
slot, which decides once per event whether it is new (its seen set), applies its own
share, and keeps the event's effects on the other slots in an outbox (gated by the
catalog and scaled by the event's newcomer budget there, once); then in each other slot,
which applies outbox entries it has not applied yet (a per-slot marker set) and the
idempotent always-ops. ``WRITE_LISTS`` writes entities' personal and recent lists,
each with its lifetime; ``READ_LISTS`` reads a batch's candidate lists.
"""

from __future__ import annotations

APPLY_SLOT = """
-- ARGV[1] = seen-set ttl (s); ARGV[2] = JSON list of
--   {"id": seen member, "s": seen (or marker) set key (absent: always-ops only),
--    "p": the seen set of the hour before (consulted, not written; absent for markers),
--    "g": [guarded ops], "a": [always ops], "b": [newcomer budget key, cap, ttl, weight,
--    gate item or false], "ci": the event's item (counted when the catalog lacks it),
--    "x": JSON {tag: [ops]} of its guarded ops in other slots and "o": the outbox hash
--    that keeps them (the shared slot)}
-- ARGV[3] = stats hash ('' = none): add the applied count to its "applied" field.
-- ARGV[4] = JSON catalog gate: {"meta": [prefix, suffix]} (item meta keys, this slot)
--   or {"known": [items]} (the items the catalog holds, as the shared slot said).
-- ARGV[5] = JSON [[zset key, members to keep], ...] trimmed at the end.
-- ARGV[6] = JSON items whose catalog presence to report.
-- ARGV[7] = this writer's id, ARGV[8] = its clock (s), ARGV[9] = handover age (s): an
--   outbox entry goes back to the writer that made it (its retry), and to another one
--   (a redelivery after that writer died) once it is this old.
-- Guarded ops run only the first time an event is seen here; always-ops are idempotent.
-- An op may lead with options (stream.item_ops): c = items that must be in the catalog,
-- s = scale the increment by the event's share of its newcomer budget, n = add to the
-- set only below this size, h = with n: the HyperLogLog that counts on once the set is
-- full (fed the set's members when it fills, then each id refused), after / gone =
-- order-safe additions and removals (below),
-- l = [t0 key, t0, half-life]: a trending increment computed against t0, rescaled to
-- the landmark the key holds now.
-- A key of another type (an older layout of derived state) is replaced. The first time
-- an event with "x" is seen, its other-slot ops are gated and scaled here and kept in
-- the outbox; the reply names, per event, the outbox entry
-- to apply (JSON {"w": writer, "t": time, "x": {tag: [ops]}}: a new event's, or an older
-- one's still kept, see ARGV[7]) or false.
-- Returns {events applied, events with an item the catalog lacks, events the newcomer
-- budget cut, [outbox entry or false per event], [1/0 per ARGV[6] item]}.
local ttl = tonumber(ARGV[1])
local events = cjson.decode(ARGV[2])
local gate = cjson.decode(ARGV[4])
local known = {}
if gate.known then for _, item in ipairs(gate.known) do known[item] = true end end
local function in_catalog(item)
  local k = known[item]
  if k == nil then
    k = gate.meta ~= nil and redis.call('EXISTS', gate.meta[1] .. item .. gate.meta[2]) == 1
    known[item] = k
  end
  return k
end
local gated_event = false
-- the trending landmark Redis holds (read once per call: a rebase is a script of its own)
local landmarks = {}
local function landmark(key)
  local t0 = landmarks[key]
  if t0 == nil then
    t0 = tonumber(redis.call('GET', key)) or false
    landmarks[key] = t0
  end
  return t0
end
-- the catalog gate (opts.c): true (and the event marked gated) when an item is unknown
local function gate_closed(opts)
  for _, item in ipairs(opts.c or {}) do
    if not in_catalog(item) then gated_event = true; return true end
  end
  return false
end
-- an op's value in place, scaled by the event's budget share (opts.s) and moved to the
-- landmark Redis holds now (opts.l: computed against t0 l[2], a rebase since); false
-- when a share of 0 means it must not run
local function rescale(op, opts, scale)
  if opts.s and scale < 1 then
    if scale <= 0 then return false end
    op[4] = string.format('%.17g', tonumber(op[4]) * scale)
  end
  if opts.l then
    local t0 = landmark(opts.l[1])
    if t0 and t0 ~= opts.l[2] then
      op[4] = string.format('%.17g', tonumber(op[4]) * 2 ^ ((opts.l[2] - t0) / opts.l[3]))
    end
  end
  return true
end
-- the op as it runs here (options resolved: catalog, scale, landmark), or nil when it
-- must not run
local function resolve(op, scale)
  local opts = op[1]
  if type(opts) ~= 'table' then return op end
  if gate_closed(opts) or not rescale(op, opts, scale) then return nil end
  if opts.n then return {{n = opts.n, h = opts.h}, unpack(op, 2)} end
  return {unpack(op, 2)}
end
-- order-safe state (stream.item_ops): an addition ({after = removals}) only when not
-- older than the member's last removal; a removal ({gone = {removals, time, keep}}) only
-- of an older addition, and remembered (the newest `keep`)
local function score(key, member)
  local r = redis.pcall('ZSCORE', key, member)
  if type(r) == 'table' then return nil end
  return tonumber(r)
end
local function timely(opts, op)
  if opts.after then
    local gone = score(opts.after, op[6])
    if gone and gone >= tonumber(op[5]) then return false end
  end
  if opts.gone then
    local g = opts.gone
    if type(redis.pcall('ZADD', g[1], 'GT', g[2], op[4])) == 'number' then
      local size = redis.call('ZCARD', g[1])
      if size > g[3] then redis.call('ZREMRANGEBYRANK', g[1], 0, size - g[3] - 1) end
    end
    local has = score(op[3], op[4])
    if has and has > tonumber(g[2]) then return false end
  end
  return true
end
-- EXPIREs run once per key, at the end of the call (the last lifetime asked wins, as
-- in order: the clock stands still in a script): many of a call's events set the same
-- seen set's, budget's or entity key's lifetime
local expiring = {}
-- a command whose key is its first argument; a key of another type (an older layout of
-- derived state) is deleted and the command run again
local function call_replacing(...)
  local r = redis.pcall(...)
  if type(r) == 'table' and r.err then
    if not string.find(r.err, 'WRONGTYPE', 1, true) then error(r) end
    redis.call('DEL', (select(2, ...)))
    r = redis.call(...)
  end
  return r
end
local function run(op, scale)
  local opts = op[1]
  local first = 1
  local size = 0  -- the exact set's size before an add (opts.n)
  if type(opts) == 'table' then  -- the catalog gate first: no key of an unknown item
    if gate_closed(opts) or not timely(opts, op) then return end
    if not rescale(op, opts, scale) then return end  -- in place: no copy of the op
    if opts.n then
      size = redis.pcall('SCARD', op[3])
      if type(size) == 'number' and size >= opts.n then
        -- full: the estimate counts on
        if opts.h then call_replacing('PFADD', opts.h, op[4]) end
        return
      end
      if type(size) ~= 'number' then size = 0 end
    end
    first = 2
  elseif opts == 'EXPIRE' then
    expiring[op[2]] = op[3]
    return
  end
  local r = call_replacing(unpack(op, first))
  if first == 2 and opts.h and r == 1 and size + 1 >= opts.n then
    -- the exact set just filled: its estimate starts from every member (chunks: Lua's
    -- stack), then takes the ids after them
    local members = redis.call('SMEMBERS', op[3])
    for i = 1, #members, 500 do
      call_replacing('PFADD', opts.h, unpack(members, i, math.min(i + 499, #members)))
    end
  end
end
-- a budget's use as Redis holds it (read once per call, then INCRBYFLOAT's reply)
local used_of = {}
local function budget_share(b)
  if b[5] and not in_catalog(b[5]) then return -1 end  -- no item: no budget to draw on
  local used = used_of[b[1]]
  if used == nil then used = tonumber(redis.call('GET', b[1])) or 0 end
  local take = math.min(b[4], math.max(0, b[2] - used))
  if take >= b[4] * (1 - 1e-9) then take = b[4] end  -- float residue is no cut
  if take > 0 then
    -- a budget is its window's: its lifetime is set once, by the draw that creates it
    -- (draws are positive, so one that used nothing yet creates the key)
    if used == 0 then expiring[b[1]] = b[3] end
    used = tonumber(redis.call('INCRBYFLOAT', b[1], string.format('%.17g', take)))
  end
  used_of[b[1]] = used
  return take / b[4]
end
local function outbox(ev, scale)
  local kept = {}
  local any = false
  for tag, ops in pairs(cjson.decode(ev['x'])) do
    local out = {}
    for _, op in ipairs(ops) do
      local r = resolve(op, scale)
      if r ~= nil then out[#out + 1] = r end
    end
    if #out > 0 then kept[tag] = out; any = true end
  end
  if not any then return false end
  local entry = cjson.encode({w = ARGV[7], t = tonumber(ARGV[8]), x = kept})
  redis.call('HSET', ev['o'], ev['id'], entry)
  redis.call('EXPIRE', ev['o'], ttl)
  return entry
end
local applied, gated, clipped = 0, 0, 0
local entries = {}
-- the events, then the lifetimes they asked for (also when an op fails: no key is
-- left without one)
local ok, failure = pcall(function()
  for i, ev in ipairs(events) do
    gated_event = false
    local new = true
    if ev['s'] then
      -- seen in its hour, or in the hour before (a retry restamped after the hour's end)
      new = not (ev['p'] and redis.call('SISMEMBER', ev['p'], ev['id']) == 1)
        and redis.call('SADD', ev['s'], ev['id']) == 1
      if new then
        expiring[ev['s']] = ttl
        applied = applied + 1
      end
    end
    local scale = 1
    if new and ev['b'] then
      scale = budget_share(ev['b'])
      if scale < 0 then scale = 0 elseif scale < 1 then clipped = clipped + 1 end
    end
    entries[i] = false
    if new then
      for _, op in ipairs(ev['g']) do run(op, scale) end
      if ev['x'] then entries[i] = outbox(ev, scale) end
      if ev['ci'] and not in_catalog(ev['ci']) then gated_event = true end
    elseif ev['o'] then  -- seen before: its outbox entry while some slot may still lack it
      local kept = redis.call('HGET', ev['o'], ev['id'])
      if kept then
        local d = cjson.decode(kept)
        if d.w == ARGV[7] or tonumber(ARGV[8]) - d.t >= tonumber(ARGV[9]) then
          entries[i] = kept
        end
      end
    end
    for _, op in ipairs(ev['a']) do run(op, 1) end
    if gated_event and new and ev['ci'] then gated = gated + 1 end
  end
end)
for key, life in pairs(expiring) do redis.call('EXPIRE', key, life) end
if not ok then error(failure) end
for _, t in ipairs(cjson.decode(ARGV[5])) do
  local size = redis.call('ZCARD', t[1])
  if size > t[2] then redis.call('ZREMRANGEBYRANK', t[1], 0, size - t[2] - 1) end
end
if ARGV[3] ~= '' and applied > 0 then redis.call('HINCRBY', ARGV[3], 'applied', applied) end
local present = {}
for i, item in ipairs(cjson.decode(ARGV[6])) do
  if in_catalog(item) then present[i] = 1 else present[i] = 0 end
end
return {applied, gated, clipped, entries, present}
"""

WRITE_LISTS = """
-- Entities' lists, entity after entity (one entity's keys share a slot; several entities
-- in one call on one standalone Redis only). KEYS = the keys the call declares (every
-- key of its entity on a Redis Cluster; one, for routing, on one standalone Redis).
-- ARGV[1] = JSON list, one segment per entity: [keys, lifetimes, fallback, guards,
--   lengths]: its list keys then its reference keys, per list (its first keys) the
--   lifetime in ms or '@j' (the remaining lifetime of its j-th key: skip when that key is
--   gone, the fallback when it has none), the fallback lifetime, [] or a guard per list,
--   and the byte length of each list's value. ARGV[2] = every value, concatenated in that
--   order (a few arguments per call, not several per entity: the client packed each
--   argument of a call into the protocol on its own, a third of a burst's list cost).
-- Every list key expires (stream.bounds). A guard (a rebuild's replay,
-- stream.redis_writer): '' = none, '!' = write only if absent, a SHA-1 = only if the
-- value there still has it (nobody else wrote since). Returns per list, entity after
-- entity: 1 = written, -1 = the guard held it back, 0 = no lifetime left; then the
-- server's clock once they are written (µs since the epoch: when readers see them, the
-- worker's freshness samples, stream.list_writes.listed_at).
local out = {}
local blob = ARGV[2]
local at = 1
for _, seg in ipairs(cjson.decode(ARGV[1])) do
  local keys, lives, fallback, guards, lengths = seg[1], seg[2], seg[3], seg[4], seg[5]
  for i = 1, #lives do
    local value = string.sub(blob, at, at + lengths[i] - 1)
    at = at + lengths[i]
    local life = lives[i]
    if string.sub(life, 1, 1) == '@' then
      life = redis.call('PTTL', keys[tonumber(string.sub(life, 2))])
      if life == -1 then life = fallback end
    end
    local free, guard = true, guards[i] or ''
    if guard ~= '' then
      local cur = redis.pcall('GET', keys[i])
      if guard == '!' then free = cur == false
      else free = type(cur) == 'string' and redis.sha1hex(cur) == guard end
    end
    if not free then out[#out + 1] = -1
    elseif tonumber(life) > 0 then
      redis.call('SET', keys[i], value, 'PX', life)
      out[#out + 1] = 1
    else out[#out + 1] = 0 end
  end
end
local now = redis.call('TIME')  -- after the writes: allowed under any replication mode
out[#out + 1] = tonumber(now[1]) * 1000000 + tonumber(now[2])
return out
"""

#: Trending scores rebased to a new landmark (``RedisWriter.rebase_trending``).
REBASE_TRENDING = """
-- KEYS[1] = trending zset, KEYS[2] = t0 key (shared slot); ARGV[1] = new t0;
-- ARGV[2] = half-life (s); ARGV[3] = scores under this after the rebase are dropped
-- (decayed to nothing: not trending, whatever their rank among the rest). The factor
-- 2^((t0 - new t0) / half-life) is from the t0 stored here (another worker may have
-- moved it since the caller read it: recommender.trending.rebase_factor).
local cur = redis.call('GET', KEYS[2])
if cur and tonumber(cur) >= tonumber(ARGV[1]) then return 0 end
if not cur then
  redis.call('SET', KEYS[2], ARGV[1])
  return 0
end
local f = 2 ^ ((tonumber(cur) - tonumber(ARGV[1])) / tonumber(ARGV[2]))
local all = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
for i = 1, #all, 2 do
  redis.call('ZADD', KEYS[1], tonumber(all[i + 1]) * f, all[i])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[3])
redis.call('SET', KEYS[2], ARGV[1])
return #all / 2
"""

READ_LISTS = """
-- KEYS (one slot) = sorted-set keys, then string keys; ARGV[1] = last rank to read
-- (depth - 1), ARGV[2] = how many of KEYS are sorted sets. Returns one reply per key:
-- the set's head as a flat [member, score, ...] array, or the string ('' when missing:
-- a nil would cut the Lua array short).
local last = tonumber(ARGV[1])
local n_sets = tonumber(ARGV[2])
local out = {}
for i, key in ipairs(KEYS) do
  if i <= n_sets then
    out[i] = redis.call('ZREVRANGE', key, 0, last, 'WITHSCORES')
  else
    out[i] = redis.call('GET', key) or ''
  end
end
return out
"""
