-- SERVE, part 1 of 4 (api.serve_script): the request, its anchors, exclusions and filters.
-- One recommendation list per call, in the shared slot (see api.serve_script for the
-- request and reply). What lives in other slots -- the entity's lists, purchases and
-- cart, an item's neighbours, co-occurrence, carters and counts -- was read beforehand
-- (api.gather) and arrives inline: in the request, or as raw text in ARGV[i]; on one
-- Redis SERVE_ONE reads them itself first (inline.lua).
local req = cjson.decode(ARGV[1])
-- SERVE_ONE (one Redis): the rate limit and the reads of api.gather happen here first
-- (inline.lua); list texts then join ARGV's in ARGS
local ARGS = ARGV
if INLINE then
  ARGS = {ARGV[1]}
  local refused = INLINE.read(req, ARGS)
  if refused then return refused end
end
local DROPPED_MAX = @EXPLAIN_DROPPED_MAX@
local CATEGORY_MAX = @CATEGORY_INTERSECT_MAX@
local BAND_MAX = @PRICE_BAND_MAX@

local function raw_arg(i)
  if i == nil then return nil end
  local raw = ARGS[i]
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

-- the session list, and for each candidate the newest recent item that led to it (via)
local function session_pairs(src)
  local totals, via = {}, {}
  for i, page in ipairs(src.pages or {}) do
    local from = src.via and src.via[i]
    for _, p in ipairs(inline_pairs(page)) do
      totals[p[1]] = (totals[p[1]] or 0) + p[2]
      if from and not via[p[1]] then via[p[1]] = from end
    end
  end
  return merged(totals), via
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
  local totals, via = {}, {}
  for b, basket in ipairs(src.baskets or {}) do
    local from = src.from and src.from[b]
    for _, id in ipairs(basket) do
      if valid_id(id) and not is_anchor[id] then
        totals[id] = (totals[id] or 0) + 1
        if from and not via[id] then via[id] = from end
      end
    end
  end
  return merged(totals), via
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

-- merchandising (api.filters): F = {cat = {...}, pmin = x, pmax = y} filters every
-- candidate before it counts towards n, K caps the items of one category, X asks for
-- the trace (api.explain): which links were read, and why candidates were left out
-- (tables and closures only when asked for: every call of the script builds them anew)
local F, K, X = req.f, req.k, req.x
-- a filtered list leaves out most candidates: it checks a page of them at once on the
-- catalog columns (stream.catalog_columns) when they are complete, else each one's fields
-- before the stock set; a trace reports stock and deletion first, so it checks them first
-- (it still reads a category's members from the columns' item sets: traced_category)
local COLS_READY = F and req.cols and redis.call('EXISTS', req.cols[3]) == 1
local COLS = COLS_READY and not X
local EARLY = F and not X and not COLS
local per_cat = K and {}
local dropped, n_dropped, dropped_total, why_blocked, trace, drop = nil, 0, 0, nil, nil, nil
if X then
  dropped, why_blocked, trace = {}, {}, {}
  drop = function(id, why)
    dropped_total = dropped_total + 1
    if n_dropped < DROPPED_MAX then
      n_dropped = n_dropped + 1
      dropped[n_dropped] = {id, why}
    end
  end
  for _, id in ipairs(req.ex or {}) do why_blocked[id] = 'excluded' end
  if req.block_anchors then for id, _ in pairs(is_anchor) do why_blocked[id] = 'in_cart' end end
end

-- the reply (see the module docstring): its head (7 + 2 * links values) is filled in at
-- the end, chosen items are appended as they pass (no table per item)
local L = #req.src
local HEAD = 7 + 2 * L
local out, n_out, n_chosen, scanned = {}, HEAD, 0, 0
for i = 1, n_out do out[i] = false end
local norms, any_via = {}, false
local falsy = @FLAG_FALSE@
local truthy = @FLAG_TRUE@
local function flag(v) return string.lower((string.gsub(tostring(v), '^%s*(.-)%s*$', '%1'))) end

-- the entity's purchases (the worker keeps the newest bought_max; all of them arrive)
local bought_set = {}
for _, id in ipairs(req.bought or {}) do bought_set[id] = true end
-- the purchases this list's buy-again link re-offers (checkout): no serving rule excludes
-- them here, so a link ahead of it (a promotion) serves them too instead of hiding them
local rebuyable = {}
for _, src in ipairs(req.src) do
  if src.k == 'again' then
    for _, p in ipairs(again_pairs(src)) do rebuyable[p[1]] = true end
  end
end

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

-- the serving rows (stream.catalog_columns.serve_row), read only while the catalog
-- columns are whole at the version that has them (rows = {key, marker key, version}):
-- then a candidate's catalog fields cost one HGET of one value, not a 7-field HMGET of
-- its hash (callgrind: ~6 % of a home request's instructions)
local ROWS = req.rows and ok(redis.pcall('GET', req.rows[2])) == req.rows[3] and req.rows[1]

-- a serving row's fields in meta_of's order: name, price, currency, category, in_stock,
-- deleted, and true for "the item is in the catalog"; nil for a row that says "read the
-- item's hash" (a field holds the separator, \31) -- one match, not a parse per field
local function row_fields(row)
  local stock, deleted, price, cur, cat, name = string.match(
    row, '^([01])([01])([^\31]*)\31([^\31]*)\31([^\31]*)\31(.*)$')
  if not stock then return nil end
  return {name, price, cur, cat, stock, deleted, true}
end

-- an item's catalog fields {name, price, currency, category, in_stock, deleted,
-- updated_at} (nil = absent), or false
local function meta_of(id)
  if ROWS then
    -- no row: an item the catalog does not know, or one an older worker wrote during
    -- an upgrade's roll (docs/operations.md, "Upgrading"): its hash says which
    local row = ok(redis.pcall('HGET', ROWS, id))
    local m = type(row) == 'string' and row_fields(row)
    if m then return m end
  end
  local m = ok(redis.pcall('HMGET', req.meta[1] .. id .. req.meta[2], 'name', 'price',
                           'currency', 'category', 'in_stock', 'deleted', 'updated_at'))
  if type(m) ~= 'table' then return false end
  return m
end

-- whether catalog fields m (as meta_of reads them) pass the request's filters: an item
-- without a category or a price never passes a filter on it
local passes = nil
if F then
  passes = function(m)
    if F.cat and not cat_ok(m and m[4], F.cat) then return false end
    if F.pmin or F.pmax then
      local price = m and finite(m[2])
      if price == nil then return false end
      if F.pmin and price < F.pmin then return false end
      if F.pmax and price > F.pmax then return false end
    end
    return true
  end
end

