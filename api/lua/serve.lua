-- One recommendation list per call, in the shared slot (see api.serve_script for the
-- request and reply). What lives in other slots -- the entity's lists, purchases and
-- cart, an item's neighbours, co-occurrence, carters and counts -- was read beforehand
-- (api.gather) and arrives inline: in the request, or as raw text in ARGV[i].
local req = cjson.decode(ARGV[1])

local function raw_arg(i)
  if i == nil then return nil end
  local raw = ARGV[i]
  if raw == nil or raw == '' then return nil end
  return raw
end

-- pre-read sorted-set entries [[id, score text], ...] -> entries {id, score, text}
local function inline_pairs(list)
  local out, n = {}, 0
  for _, e in ipairs(list or {}) do
    local s = finite(e[2])
    if valid_id(e[1]) and s ~= nil then
      n = n + 1
      out[n] = {e[1], s, e[2]}
    end
  end
  return out
end

local function session_pairs(src)
  local totals = {}
  for _, page in ipairs(src.pages or {}) do
    for _, p in ipairs(inline_pairs(page)) do totals[p[1]] = (totals[p[1]] or 0) + p[2] end
  end
  return merged(totals)
end

-- the cart (anchors): the ids passed in, then the entity's cart, newest first (the
-- worker keeps its newest cart_max items; all of them arrive, so every one is filtered)
local anchors, is_anchor = {}, {}
local function add_anchor(id)
  if valid_id(id) and not is_anchor[id] then
    is_anchor[id] = true
    anchors[#anchors + 1] = id
  end
end
for _, id in ipairs(req.anchors or {}) do add_anchor(id) end
for _, id in ipairs(req.cart or {}) do add_anchor(id) end

-- items in the baskets of the last people who carted the same items (their baskets
-- arrive in order: anchor by anchor, carter by carter)
local function complement_pairs(src)
  local totals = {}
  for _, basket in ipairs(src.baskets or {}) do
    for _, id in ipairs(basket) do
      if valid_id(id) and not is_anchor[id] then totals[id] = (totals[id] or 0) + 1 end
    end
  end
  return merged(totals)
end

-- distinct buyers of an item: exact while the capped set is not full, then the
-- HyperLogLog's estimate (stream.bounds)
local function buyers_of(src, exact, estimate)
  exact = tonumber(exact) or 0
  if exact < src.exact_max then return exact end
  return math.max(exact, tonumber(estimate) or 0)
end

-- each purchased item arrives as [id, purchases, exact buyers, estimated buyers]
local function again_pairs(src)
  local totals = {}
  for _, e in ipairs(src.items or {}) do
    local id = e[1]
    if valid_id(id) then
      local purchases = tonumber(e[2]) or 0
      local buyers = buyers_of(src, e[3], e[4])
      if buyers >= src.min_buyers and purchases > 0 then
        local rate = (purchases - buyers) / purchases
        if rate >= src.min_rate then totals[id] = rate end
      end
    end
  end
  return merged(totals)
end

-- affinity of the entity for items (re-ranks the similar links of the product context)
local affinity, aff_lo, aff_hi = {}, nil, nil
if req.boost then
  for _, p in ipairs(json_pairs(raw_arg(req.boost))) do
    affinity[p[1]] = p[2]
    if aff_lo == nil or p[2] < aff_lo then aff_lo = p[2] end
    if aff_hi == nil or p[2] > aff_hi then aff_hi = p[2] end
  end
end

local blocked = {}
for _, id in ipairs(req.ex or {}) do blocked[id] = true end
if req.block_anchors then for id, _ in pairs(is_anchor) do blocked[id] = true end end

-- the reply (see the module docstring): its head (6 + 2 * links values) is filled in at
-- the end, chosen items are appended as they pass (no table per item)
local L = #req.src
local out, n_out, n_chosen, scanned = {}, 6 + 2 * L, 0, 0
for i = 1, n_out do out[i] = false end
local norms = {}
local falsy = {['0'] = true, ['false'] = true, ['no'] = true, ['off'] = true}
local truthy = {['1'] = true, ['true'] = true, ['yes'] = true, ['on'] = true}
local function flag(v) return string.lower((string.gsub(tostring(v), '^%s*(.-)%s*$', '%1'))) end

-- the entity's purchases (the worker keeps the newest bought_max; all of them arrive)
local bought_set = {}
for _, id in ipairs(req.bought or {}) do bought_set[id] = true end

-- a price as text: stored plain decimals travel as they are (the client parses them to
-- the same double), anything else Lua accepts as a number goes through '%.17g', which
-- round-trips whatever Lua parsed
local function price_text(raw)
  local price = finite(raw)
  if price == nil or price < 0 then return false end
  if string.find(raw, '^%d+%.?%d*$') then return raw end
  return string.format('%.17g', price)
end

-- numbers travel as text: Lua numbers would reach the client truncated to integers
local function num(x)
  if type(x) == 'number' then return string.format('%.17g', x) end
  return x
end

-- p = {id, score, score text (when read from Redis), stored reason}: appends the item to
-- the reply when it passes the filters, with its catalog fields
local function consider(si, src, pos, p)
  scanned = scanned + 1
  local id = p[1]
  if blocked[id] then return end
  blocked[id] = true
  if not src.rebuy and bought_set[id] then return end
  if redis.call('SISMEMBER', req.un, id) == 1 then return end
  local name, price, cur, cat = false, false, false, false
  local m = ok(redis.pcall('HMGET', req.meta[1] .. id .. req.meta[2], 'name', 'price',
                           'currency', 'category', 'in_stock', 'deleted', 'updated_at'))
  if type(m) == 'table' and (m[1] or m[2] or m[3] or m[4] or m[5] or m[6] or m[7]) then
    local stock, deleted = m[5], m[6]
    if stock and stock ~= '1' and falsy[flag(stock)] then return end
    if deleted and deleted ~= '0' and truthy[flag(deleted)] then return end
    if m[2] then price = price_text(m[2]) end
    if m[1] and m[1] ~= '' then name = m[1] end
    if m[3] and m[3] ~= '' then cur = m[3] end
    if m[4] and m[4] ~= '' then cat = m[4] end
  elseif req.catalog then
    return
  end
  n_chosen = n_chosen + 1
  local score = p[3] or p[2]
  if type(score) == 'number' then score = string.format('%.17g', score) end
  local aff = affinity[id]
  if aff then aff = string.format('%.17g', aff) else aff = false end
  out[n_out + 1] = si
  out[n_out + 2] = pos
  out[n_out + 3] = score
  out[n_out + 4] = id
  out[n_out + 5] = name
  out[n_out + 6] = price
  out[n_out + 7] = cur
  out[n_out + 8] = cat
  out[n_out + 9] = aff
  out[n_out + 10] = p[4] or false
  n_out = n_out + 10
end

local function note_norm(si, list, upto)
  local lo, hi = nil, nil
  for i = 1, math.min(#list, upto) do
    local s = list[i][2]
    if lo == nil or s < lo then lo = s end
    if hi == nil or s > hi then hi = s end
  end
  norms[si] = {lo or 0, hi or 0}
end

local lazy, lazy_raw
local function lazy_list_on(src)
  lazy_raw = raw_arg(src.arg)
  lazy = lazy_list(lazy_raw)
  return lazy ~= nil
end

for si, src in ipairs(req.src) do
  local cap = src.take or req.n
  norms[si] = {0, 0}
  -- the recent items' co-occurrence is read only when this link is needed
  if src.k == 'session' and src.pages == nil and n_chosen < cap then return {'need'} end
  if n_chosen < cap then
    if src.k == 'zset' then
      local start, first = 0, true
      while n_chosen < cap and scanned < req.scan do
        local page, got = zset_page(src.key, start, req.page)
        if first then note_norm(si, page, #page); first = false end
        for i, p in ipairs(page) do
          if n_chosen >= cap or scanned >= req.scan then break end
          consider(si, src, start + i - 1, p)
        end
        if got < req.page then break end
        start = start + req.page
      end
    elseif src.k == 'json' and lazy_list_on(src) then
      local list = lazy
      norms[si] = {list.lo, list.hi}
      local i = 1
      while n_chosen < cap and scanned < req.scan do
        local p = list.get(i)
        if p == nil then break end
        consider(si, src, i - 1, p)
        i = i + 1
      end
    else
      local list
      if src.k == 'json' then list = json_pairs(lazy_raw)
      elseif src.k == 'list' then list = inline_pairs(src.items)
      elseif src.k == 'session' then list = session_pairs(src)
      elseif src.k == 'comp' then list = complement_pairs(src)
      elseif src.k == 'again' then list = again_pairs(src)
      else list = {} end
      note_norm(si, list, #list)
      for i, p in ipairs(list) do
        if n_chosen >= cap or scanned >= req.scan then break end
        consider(si, src, i - 1, p)
      end
    end
  end
end

local t0 = false
if req.t0 then t0 = ok(redis.pcall('GET', req.t0)) or false end
local v = ok(redis.pcall('GET', req.v))
if type(v) ~= 'string' then v = false end
-- the reply's head: 'ok', version, t0, affinity lo/hi, link count, each link's lo/hi
out[1], out[2], out[3], out[4], out[5], out[6] = 'ok', v, t0, num(aff_lo or 0),
                                                  num(aff_hi or 0), L
for si = 1, L do
  out[5 + 2 * si] = num(norms[si][1])
  out[6 + 2 * si] = num(norms[si][2])
end
return out
