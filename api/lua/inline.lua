-- SERVE_ONE only (one Redis, api.gather.serve_one): the reads api.gather makes before
-- SERVE on a Redis Cluster, made here instead, so a list is one round trip. The request
-- carries `one`: `rl` = the rate limit {key, interval s, burst, lease size or none: the
-- reply's head is then the count charged, not 'ok'}, `ent` = the entity's
-- reads {keys, want, bm, cm, cart} (entity_read.lua), `cooc` = the parts of an item's
-- co-occurrence key (core.redis_keys.RedisKeys.bucketed), `comp` = the complements'
-- reads {na anchors, nc carters each, carters and basket key parts}, `again` = the
-- repeat purchases' reads {max items, stats, buyers and hll key parts}; links
-- `item_similar` / `item_cooc` carry their `key`. Everything is filled in as
-- api.gather.ServeInputs fills it, so the serve script runs unchanged after it.
local INLINE = {}

-- the bucket of an item's or a shopper's id: CRC-32 (IEEE, as zlib.crc32) of its bytes
-- modulo `buckets`, core.key_tags' rule; the 16 half-byte steps are computed on first
-- use in this call
local CRC_HALF = nil
local function id_bucket(id, buckets)
  if CRC_HALF == nil then
    CRC_HALF = {}
    for i = 0, 15 do
      local c = i
      for _ = 1, 4 do
        if bit.band(c, 1) == 1 then c = bit.bxor(bit.rshift(c, 1), 0xEDB88320)
        else c = bit.rshift(c, 1) end
      end
      CRC_HALF[i] = c
    end
  end
  local crc = -1
  for i = 1, #id do
    crc = bit.bxor(crc, string.byte(id, i))
    crc = bit.bxor(bit.rshift(crc, 4), CRC_HALF[bit.band(crc, 15)])
    crc = bit.bxor(bit.rshift(crc, 4), CRC_HALF[bit.band(crc, 15)])
  end
  crc = bit.bnot(crc)
  if crc < 0 then crc = crc + 4294967296 end  -- bit ops answer signed 32-bit numbers
  return crc % buckets
end

-- the key of an id in its bucket, from core.redis_keys.RedisKeys.bucketed's parts
function INLINE.key(parts, id)
  return parts[1] .. id_bucket(id, parts[4]) .. parts[2] .. id .. parts[3]
end

-- the first `limit` distinct valid ids of a list (api.gather.valid_ids)
local function first_valid(values, limit)
  local out, seen = {}, {}
  for _, id in ipairs(values) do
    if #out >= limit then break end
    if valid_id(id) and not seen[id] then
      seen[id] = true
      out[#out + 1] = id
    end
  end
  return out
end

-- a sorted set's members, or none when the key is missing or not a sorted set
local function members(cmd, k, stop)
  return ok(redis.pcall(cmd, k, 0, stop)) or {}
end

-- a sorted set's best entries as {member, score text} pairs (api.gather._pairs)
local function best_pairs(k, count)
  local flat = ok(redis.pcall('ZREVRANGE', k, 0, count - 1, 'WITHSCORES')) or {}
  local out = {}
  for i = 1, #flat - 1, 2 do out[#out + 1] = {flat[i], flat[i + 1]} end
  return out
end

-- the links of one kind, each given field = value
local function fill(req, kind, field, value)
  for _, src in ipairs(req.src) do
    if src.k == kind then src[field] = value end
  end
end

-- the cart's complements: the baskets of the last carters of its first anchors, each
-- with the anchor it came from (api.gather: second and third round trips)
local function complements(req, c)
  local pool = {}
  for _, id in ipairs(req.anchors or {}) do pool[#pool + 1] = id end
  for _, id in ipairs(req.cart or {}) do pool[#pool + 1] = id end
  local baskets, from = {}, {}
  for _, anchor in ipairs(first_valid(pool, c.na)) do
    for _, who in ipairs(members('ZREVRANGE', INLINE.key(c.carters, anchor), c.nc - 1)) do
      baskets[#baskets + 1] = members('ZRANGE', INLINE.key(c.basket, who), -1)
      from[#from + 1] = anchor
    end
  end
  fill(req, 'comp', 'baskets', baskets)
  fill(req, 'comp', 'from', from)
end

-- buy-again: each purchased item with its purchases, exact and estimated buyers
local function repeat_counts(req, a)
  local items = {}
  for _, item in ipairs(first_valid(req.bought or {}, a.max)) do
    local p = ok(redis.pcall('HGET', INLINE.key(a.stats, item), 'purchase'))
    local e = ok(redis.pcall('SCARD', INLINE.key(a.buyers, item)))
    local h = ok(redis.pcall('PFCOUNT', INLINE.key(a.hll, item)))
    items[#items + 1] = {item, p or '0', e or '0', h or '0'}
  end
  fill(req, 'again', 'items', items)
end

-- the rate limit, then every read of the request (entity, cart complements, buy-again,
-- anchor): a refusal's reply, or nil
function INLINE.read(req, args)
  local one = req.one
  if one.rl and one.rl[4] then  -- a lease of rl[4] requests (api.rate_lease)
    local charged, wait = gcra_lease(one.rl[1], tonumber(one.rl[2]), tonumber(one.rl[3]),
                                     tonumber(one.rl[4]))
    if charged == 0 then return {'limited', tostring(wait)} end
    INLINE.leased = charged
  elseif one.rl then
    local wait = rate_limited(one.rl[1], tonumber(one.rl[2]), tonumber(one.rl[3]))
    if wait > 0 then return {'limited', tostring(wait)} end
  end
  local recs = false
  if one.ent then
    local explain = req.x == true
    local e = entity_read(one.ent.keys, one.ent.want, one.ent.bm, one.ent.cm,
                          explain and '1' or '0')
    recs = e[1]
    req.bought = e[3]
    if one.ent.cart then req.cart = e[4] end
    INLINE.recent = e[2]
    -- explain: a link's age is that of its newest input (newest purchase, cart item)
    if explain and e[5] then fill(req, 'again', 'w', e[5]) end
    if explain and e[6] then fill(req, 'comp', 'w', e[6]) end
  end
  if one.comp then complements(req, one.comp) end
  if one.again then repeat_counts(req, one.again) end
  local index = nil
  if recs and recs ~= '' then
    args[#args + 1] = recs
    index = #args
  end
  if req.boost ~= nil then req.boost = index end
  for _, src in ipairs(req.src) do
    if src.k == 'user_recs' then
      src.k, src.arg = 'json', index
    elseif src.k == 'item_similar' then
      local raw = redis.pcall('GET', src.key)
      src.k, src.arg = 'json', nil
      if type(raw) == 'string' and raw ~= '' then
        args[#args + 1] = raw
        src.arg = #args
      end
    elseif src.k == 'item_cooc' then
      src.k, src.items = 'list', best_pairs(src.key, req.scan)
    end
  end
  return nil
end

-- the session link's pages: the co-occurrence of the first SESSION_ITEMS distinct valid
-- ids of the entity's recent list (api.gather.valid_ids), each a page of req.page
function INLINE.session(src, req)
  local ids = {}
  local parsed, list = false, nil
  if type(INLINE.recent) == 'string' then parsed, list = pcall(cjson.decode, INLINE.recent) end
  if parsed and type(list) == 'table' then ids = first_valid(list, @SESSION_ITEMS@) end
  local pages = {}
  for i, id in ipairs(ids) do
    pages[i] = best_pairs(INLINE.key(req.one.cooc, id), req.page)
  end
  src.pages, src.via = pages, ids
end
