"""The Lua scripts through which the worker writes a batch (``stream.redis_writer``).

``APPLY_EVENTS`` applies the counted effects of up to ``LUA_CHUNK_EVENTS`` events
atomically: each event's guarded ops run only the first time its seen-set member is
added, with the state bounds of ``stream.bounds`` (catalog gates, the newcomer budget,
capped sets) and the trims of popular, trending and co-occurrence at the end.
``WRITE_LISTS`` writes the batch's personal and recent lists, each with its lifetime.
"""

from __future__ import annotations

APPLY_EVENTS = """
-- ARGV[1] = seen-set ttl (s); ARGV[2] = JSON list of
--   {"id": seen member, "s": seen-set key, "g": [guarded ops], "a": [always ops],
--    "b": [newcomer budget key, cap, ttl, weight, item or false] (optional)}
-- ARGV[3] = stats hash ('' = none): add the applied count to its "applied" field.
-- ARGV[4] = JSON [prefix, suffix] of item meta keys (the catalog gate);
-- ARGV[5] = JSON [[zset key, members to keep], ...] trimmed at the end.
-- Guarded ops run only the first time an event is seen; always-ops are idempotent. An op
-- may lead with options (stream.item_ops): c = items that must be in the catalog,
-- s = scale the increment by the event's share of its newcomer budget, n = add to the
-- set only below this size. A key of another type (an older layout of derived state)
-- is replaced. Returns {events applied, events with an item the catalog lacks, events
-- the newcomer budget cut}.
local ttl = tonumber(ARGV[1])
local events = cjson.decode(ARGV[2])
local meta = cjson.decode(ARGV[4])
local known = {}
local function in_catalog(item)
  local k = known[item]
  if k == nil then
    k = redis.call('EXISTS', meta[1] .. item .. meta[2]) == 1
    known[item] = k
  end
  return k
end
local gated_event = false
local function run(op, scale)
  local first = 1
  local opts = op[1]
  if type(opts) == 'table' then
    first = 2
    if opts.c then
      for _, item in ipairs(opts.c) do
        if not in_catalog(item) then gated_event = true; return end
      end
    end
    if opts.n then
      local size = redis.pcall('SCARD', op[3])
      if type(size) == 'number' and size >= opts.n then return end
    end
    if opts.s and scale < 1 then
      if scale <= 0 then return end
      op[4] = string.format('%.17g', tonumber(op[4]) * scale)
    end
  end
  local r = redis.pcall(unpack(op, first))
  if type(r) == 'table' and r.err then
    if not string.find(r.err, 'WRONGTYPE', 1, true) then error(r) end
    redis.call('DEL', op[first + 1])
    redis.call(unpack(op, first))
  end
end
local function budget_share(b)
  if b[5] and not in_catalog(b[5]) then return -1 end  -- no item: no budget to draw on
  local used = tonumber(redis.call('GET', b[1])) or 0
  local take = math.min(b[4], math.max(0, b[2] - used))
  if take >= b[4] * (1 - 1e-9) then take = b[4] end  -- float residue is no cut
  if take > 0 then
    redis.call('INCRBYFLOAT', b[1], string.format('%.17g', take))
    redis.call('EXPIRE', b[1], b[3])
  end
  return take / b[4]
end
local applied, gated, clipped = 0, 0, 0
for _, ev in ipairs(events) do
  gated_event = false
  local new = redis.call('SADD', ev['s'], ev['id']) == 1
  if new then
    redis.call('EXPIRE', ev['s'], ttl)
    applied = applied + 1
    local scale = 1
    if ev['b'] then scale = budget_share(ev['b']) end
    if scale < 0 then scale = 0 elseif scale < 1 then clipped = clipped + 1 end
    for _, op in ipairs(ev['g']) do run(op, scale) end
  end
  for _, op in ipairs(ev['a']) do run(op, 1) end
  if gated_event and new then gated = gated + 1 end
end
for _, t in ipairs(cjson.decode(ARGV[5])) do
  local size = redis.call('ZCARD', t[1])
  if size > t[2] then redis.call('ZREMRANGEBYRANK', t[1], 0, size - t[2] - 1) end
end
if ARGV[3] ~= '' and applied > 0 then redis.call('HINCRBY', ARGV[3], 'applied', applied) end
return {applied, gated, clipped}
"""

WRITE_LISTS = """
-- KEYS = list keys, then reference keys; ARGV[1] = how many lists; ARGV[1 + i] = value
-- of KEYS[i]; ARGV[1 + n + i] = its lifetime in ms, or '@j': the remaining lifetime of
-- KEYS[j] (skip when KEYS[j] is gone; the fallback lifetime ARGV[2 + 2n] when it has
-- none). Every list key expires (stream.bounds).
local n = tonumber(ARGV[1])
local fallback = ARGV[2 + 2 * n]
for i = 1, n do
  local life = ARGV[1 + n + i]
  if string.sub(life, 1, 1) == '@' then
    life = redis.call('PTTL', KEYS[tonumber(string.sub(life, 2))])
    if life == -1 then life = fallback end
  end
  if tonumber(life) > 0 then redis.call('SET', KEYS[i], ARGV[1 + i], 'PX', life) end
end
return n
"""
