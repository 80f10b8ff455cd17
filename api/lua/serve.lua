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

local function meta_of(id)
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

-- p = {id, score, score text (when read from Redis), stored reason}: appends the item to
-- the reply when it passes the serving rules, the filters and the category cap, with its
-- catalog fields and `via` (the item of the entity's that led to it, or nil)
local function consider(si, src, pos, p, via)
  scanned = scanned + 1
  local id = p[1]
  if blocked[id] then
    if X and why_blocked[id] then drop(id, why_blocked[id]); why_blocked[id] = nil end
    return
  end
  local m = nil
  if src.lc then
    -- a promotion of a category: other items stay open to the links after it
    m = meta_of(id)
    if not cat_ok(m and m[4], src.lc) then return end
  end
  blocked[id] = true
  if not src.rebuy and bought_set[id] then
    if X then drop(id, 'purchased') end
    return
  end
  if EARLY then
    if m == nil then m = meta_of(id) end
    if not passes(m) then return end
  end
  if redis.call('SISMEMBER', req.un, id) == 1 then
    if X then
      if redis.call('SISMEMBER', req.del, id) == 1 then drop(id, 'deleted')
      else drop(id, 'out_of_stock') end
    end
    return
  end
  if m == nil then m = meta_of(id) end
  local name, price, cur, cat = false, false, false, false
  if m and (m[1] or m[2] or m[3] or m[4] or m[5] or m[6] or m[7]) then
    local stock, deleted = m[5], m[6]
    if stock and stock ~= '1' and falsy[flag(stock)] then
      if X then drop(id, 'out_of_stock') end
      return
    end
    if deleted and deleted ~= '0' and truthy[flag(deleted)] then
      if X then drop(id, 'deleted') end
      return
    end
    if m[2] then price = price_text(m[2]) end
    if m[1] and m[1] ~= '' then name = m[1] end
    if m[3] and m[3] ~= '' then cur = m[3] end
    if m[4] and m[4] ~= '' then cat = m[4] end
  elseif req.catalog then
    if X then drop(id, 'filtered') end
    return
  end
  if F and not EARLY and not passes(m) then
    if X then drop(id, 'filtered') end
    return
  end
  if K and cat then
    local c = per_cat[cat] or 0
    if c >= K then
      if X then drop(id, 'capped') end
      return
    end
    per_cat[cat] = c + 1
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
  if via then
    out[n_out + 11] = via
    any_via = true
  else
    out[n_out + 11] = false
  end
  n_out = n_out + 11
end

-- the item sets of the filter's categories (catalog columns), or nil when they hold more
-- than CATEGORY_MAX items together (then: scan)
local function category_sets()
  if not req.cols[4] then return nil end
  local sets, total = {}, 0
  for i, c in ipairs(F.cat) do
    sets[i] = req.cols[4][1] .. c .. req.cols[4][2]
    total = total + (tonumber(ok(redis.pcall('SCARD', sets[i]))) or 0)
  end
  if total > CATEGORY_MAX then return nil end
  return sets
end

-- the members of sorted set `key` in any of `sets` (ZINTER, Redis 6.2), best first (ties
-- as ZREVRANGE orders them), as {id, score, score text}; false on an error
local function members_in(key, sets)
  local found, seen = {}, {}
  for _, set in ipairs(sets) do
    local got = ok(redis.pcall('ZINTER', 2, key, set, 'WEIGHTS', 1, 0, 'WITHSCORES'))
    if type(got) ~= 'table' then return false end
    for i = #got - 1, 1, -2 do
      local id = got[i]
      if not seen[id] then
        seen[id] = true
        found[#found + 1] = {id, tonumber(got[i + 1]), got[i + 1]}
      end
    end
  end
  if #sets > 1 then
    table.sort(found, function(a, b)
      if a[2] ~= b[2] then return (a[2] or 0) > (b[2] or 0) end
      return a[1] > b[1]
    end)
  end
  return found
end

-- the normaliser of a sorted set's first page, from its two ends (as a scan would note it)
local function first_page_norm(si, key)
  local hi = zset_page(key, 0, 1)[1]
  if hi then
    local lo = zset_page(key, req.page - 1, 1)[1] or zset_page(key, -1, 1)[1]
    norms[si] = {(lo or hi)[2], hi[2]}
  end
end

local prefilter, consider_found, consider_batch, consider_ids, consider_category
if COLS then
  -- with the columns: whether each of `ids` passes the filters (one HMGET per filtered
  -- column for all of them)
  prefilter = function(ids, in_category)
    local pass = {}
    for j = 1, #ids do pass[j] = true end
    if #ids == 0 then return pass end
    local member = F.cat and not in_category and #F.cat == 1 and req.cols[4]
                   and ok(redis.pcall('SMISMEMBER', req.cols[4][1] .. F.cat[1] .. req.cols[4][2],
                                      unpack(ids)))
    if type(member) == 'table' then
      -- one category: membership of its item set (Redis 6.2), answered as integers
      -- (cheaper than the category strings: 1.44 M -> 1.34 M instructions for a
      -- personal list read through to its end)
      for j = 1, #ids do pass[j] = member[j] == 1 end
    elseif F.cat and not in_category then
      local cats = redis.call('HMGET', req.cols[1], unpack(ids))
      if #F.cat == 1 then
        -- cat_ok inlined for one category: most candidates fail at the first byte test
        local c1, n1 = F.cat[1], #F.cat[1]
        for j = 1, #ids do
          local c = cats[j]
          pass[j] = c == c1 or (c and #c > n1 and string.byte(c, n1 + 1) == 46
                                and string.sub(c, 1, n1) == c1) or false
        end
      else
        for j = 1, #ids do pass[j] = cat_ok(cats[j], F.cat) end
      end
    end
    if F.pmin or F.pmax then
      local prices = redis.call('HMGET', req.cols[2], unpack(ids))
      for j = 1, #ids do
        if pass[j] then
          local price = finite(prices[j])
          pass[j] = price ~= nil and not (F.pmin and price < F.pmin)
                    and not (F.pmax and price > F.pmax)
        end
      end
    end
    return pass
  end

  -- with the columns: the candidates `ids` (positions from `pos0`) that pass the
  -- filters, considered in order; `entry(j)` makes the candidate {id, score or false,
  -- score text, reason} of one that passes (only those become tables), false when its
  -- entry is malformed. The others count as examined.
  consider_found = function(si, src, ids, pos0, via, cap, limit, in_category, entry)
    local pass = prefilter(ids, in_category)
    for j = 1, #ids do
      if n_chosen >= cap or scanned >= limit then return end
      local p = pass[j] and entry(j)
      if p and not p[2] then
        -- an entry read without its number (a list entry's text; a sorted set member
        -- without its score): a score that is not finite and an id that breaks the id
        -- rule do not pass either
        if p[3] == nil then p[3] = redis.call('ZSCORE', src.key, p[1]) end
        local s = finite(p[3])
        if s ~= nil and valid_id(p[1]) then p[2] = s else p = false end
      end
      if p then
        consider(si, src, pos0 + j - 1, p, via and via[p[1]])
      else
        scanned = scanned + 1
      end
    end
  end

  -- the same for candidates that are tables already ({id, score, ...})
  consider_batch = function(si, src, batch, pos0, via, cap, limit, in_category)
    local ids = {}
    for j = 1, #batch do ids[j] = batch[j][1] end
    consider_found(si, src, ids, pos0, via, cap, limit, in_category,
                   function(j) return batch[j] end)
  end

  -- with the columns, past a sorted set's first page: `count` members from rank `start`
  -- read without their scores (formatting and parsing scores was most of a deep scan's
  -- cost), filtered at once; a passing member's score is read alone. Returns how many
  -- members were read.
  consider_ids = function(si, src, start, count, cap, limit)
    local ids = ok(redis.pcall('ZREVRANGE', src.key, start, start + count - 1))
    if type(ids) ~= 'table' then return 0 end
    local pass = prefilter(ids)
    for j = 1, #ids do
      if n_chosen >= cap or scanned >= limit then break end
      local id = ids[j]
      local text = pass[j] and valid_id(id) and redis.call('ZSCORE', src.key, id)
      local s = text and finite(text)
      if s ~= nil and s ~= false then
        consider(si, src, start + j - 1, {id, s, text})
      else
        scanned = scanned + 1
      end
    end
    return #ids
  end

  -- with the columns and a category filter: the members of a sorted set in the
  -- categories, read as the intersection with the categories' item sets (ZINTER,
  -- Redis 6.2) when these hold at most CATEGORY_INTERSECT_MAX items -- a narrow
  -- category deep in a long set costs what it holds, not the scan to it. Best first
  -- (ties as ZREVRANGE orders them); false when it did not apply (then: scan).
  consider_category = function(si, src, cap, limit)
    local sets = category_sets()
    if not sets then return false end
    if #sets == 1 then
      -- members only (formatting every score cost more than the intersection): scores
      -- are read for what passes, tables made only for those
      local got = ok(redis.pcall('ZINTER', 2, src.key, sets[1], 'WEIGHTS', 1, 0))
      if type(got) ~= 'table' then return false end
      local at = #got + 1  -- ZINTER answers lowest first
      while at > 1 and n_chosen < cap and scanned < limit do
        local ids = {}
        for j = 1, math.min(req.page, at - 1) do ids[j] = got[at - j] end
        consider_found(si, src, ids, #got + 1 - at, nil, cap, limit, true,
                       function(j) return {ids[j], false} end)
        at = at - #ids
      end
      return true
    end
    local found = members_in(src.key, sets)
    if not found then return false end
    for _, p in ipairs(found) do p[2] = false end  -- checked only if it passes
    for from = 1, #found, req.page do
      if n_chosen >= cap or scanned >= limit then break end
      local batch = {}
      for j = from, math.min(#found, from + req.page - 1) do batch[#batch + 1] = found[j] end
      consider_batch(si, src, batch, from - 1, nil, cap, limit, true)
    end
    return true
  end
end

-- a category promotion (a zset link with `lc`): its category's items in the sorted set,
-- best first, read as the intersection with the category's item set (sub-categories
-- included; ZINTER, Redis 6.2) when the worker's catalog columns are complete and the set
-- holds at most CATEGORY_INTERSECT_MAX items -- a scan of the set's first candidates would
-- miss a category that ranks below them. False when it did not apply (then: scan).
local CSETS = req.csets and redis.call('EXISTS', req.csets[3]) == 1 and req.csets
local function promoted_category(si, src, cap, limit)
  local set = CSETS[1] .. src.lc[1] .. CSETS[2]
  if (tonumber(ok(redis.pcall('SCARD', set))) or 0) > CATEGORY_MAX then return false end
  local got = ok(redis.pcall('ZINTER', 2, src.key, set, 'WEIGHTS', 1, 0))
  if type(got) ~= 'table' then return false end
  first_page_norm(si, src.key)
  for at = #got, 1, -1 do  -- ZINTER answers lowest first
    if n_chosen >= cap or scanned >= limit then break end
    local id = got[at]
    local text = valid_id(id) and ok(redis.pcall('ZSCORE', src.key, id))
    local s = text and finite(text)
    if s ~= nil and s ~= false then consider(si, src, #got - at, {id, s, text})
    else scanned = scanned + 1 end
  end
  return true
end

-- a category filter with a trace: the sorted set's members in the categories, read as
-- consider_category reads them (a category deep in a long set is found past the scan
-- budget there too, at the same positions: explain never changes the list), each through
-- consider, which notes why a candidate is left out; then the members outside the
-- categories that rank above the last one read (all the budget's when the link ran
-- short), which a scan would have left out, are noted as filtered (they count in no
-- budget). False when it did not apply (then: scan).
local function traced_category(si, src, cap, limit)
  local sets = category_sets()
  local found = sets and members_in(src.key, sets)
  if not found then return false end
  first_page_norm(si, src.key)
  local upto, last, inside = limit - scanned, nil, {}
  for pos, p in ipairs(found) do
    inside[p[1]] = true
    if n_chosen < cap and scanned < limit then
      last = p[1]
      local s = valid_id(p[1]) and finite(p[3])
      if s ~= nil and s ~= false then consider(si, src, pos - 1, {p[1], s, p[3]})
      else scanned = scanned + 1 end
    end
  end
  if last and n_chosen >= cap then
    upto = math.min(upto, (tonumber(ok(redis.pcall('ZREVRANK', src.key, last))) or upto) + 1)
  end
  for start = 0, upto - 1, req.page do
    local ids = ok(redis.pcall('ZREVRANGE', src.key, start, math.min(upto, start + req.page) - 1))
    if type(ids) ~= 'table' or #ids == 0 then break end
    for _, id in ipairs(ids) do
      if not inside[id] and not blocked[id] then
        blocked[id] = true
        drop(id, 'filtered')
      end
    end
  end
  return true
end

-- a price filter on a sorted set that the candidate budget left short (the band ranks
-- below the first FILTER_SCAN_MAX: cheap items nobody views): the band's items, read
-- from the price index (stream.catalog_columns) once per request when it holds at most
-- PRICE_BAND_MAX items and the marker says it is whole (cols[5], cols[6]), then per link
-- their scores in the set (ZMSCORE), best first (ties as ZREVRANGE orders them), those
-- not examined yet, each at its rank in the set. They are examined like a scan's
-- candidates (filters, stock, deletion, purchases, the cap; a trace notes why), within
-- BAND_MAX more candidates per request. Requests without a price filter never get here.
local BAND = COLS_READY and (F.pmin or F.pmax) and req.cols[5] and req.cols[6]
local band_ids, band_end, band_members, price_band = nil, 0, nil, nil
if BAND then  -- (closures only when asked for, as above)
  band_members = function()
    if band_ids == nil then
      band_ids, band_end = false, scanned + BAND_MAX
      if ok(redis.pcall('GET', req.cols[3])) ~= req.cols[6] then return false end
      local lo, hi = '-inf', '+inf'
      if F.pmin then lo = num(F.pmin) end
      if F.pmax then hi = num(F.pmax) end
      local count = tonumber(ok(redis.pcall('ZCOUNT', req.cols[5], lo, hi))) or 0
      if count > 0 and count <= BAND_MAX then
        local got = ok(redis.pcall('ZRANGEBYSCORE', req.cols[5], lo, hi))
        if type(got) == 'table' then band_ids = got end
      end
    end
    return band_ids
  end

  price_band = function(si, src, cap)
    local ids = band_members()
    if not ids then return end
    local found = {}
    for from = 1, #ids, 500 do  -- ZMSCORE (Redis 6.2) in chunks: unpack's stack
      local chunk = {}
      for j = from, math.min(#ids, from + 499) do chunk[#chunk + 1] = ids[j] end
      local scores = ok(redis.pcall('ZMSCORE', src.key, unpack(chunk)))
      if type(scores) ~= 'table' then return end
      for j, id in ipairs(chunk) do
        local s = scores[j] and finite(scores[j])
        if s and valid_id(id) and (not blocked[id] or (X and why_blocked[id])) then
          found[#found + 1] = {id, s, scores[j]}
        end
      end
    end
    table.sort(found, function(a, b)
      if a[2] ~= b[2] then return a[2] > b[2] end
      return a[1] > b[1]
    end)
    for from = 1, #found, req.page do
      if n_chosen >= cap or scanned >= band_end then return end
      local page, pass = {}, nil
      for j = from, math.min(#found, from + req.page - 1) do page[#page + 1] = found[j][1] end
      if COLS then pass = prefilter(page) end
      for j, id in ipairs(page) do
        if n_chosen >= cap or scanned >= band_end then return end
        if pass and not pass[j] then
          scanned = scanned + 1
        else
          local rank = tonumber(ok(redis.pcall('ZREVRANK', src.key, id))) or 0
          consider(si, src, rank, found[from + j - 1])
        end
      end
    end
  end
end  -- BAND

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
  lazy = lazy_list(lazy_raw, COLS)
  return lazy ~= nil
end

for si, src in ipairs(req.src) do
  local cap = src.take or req.n
  -- a promotion fills at most its own slots (quota), counted from where it starts
  if src.quota then cap = math.min(req.n, n_chosen + src.quota) end
  -- a link may have its own budget of candidates (promotions), within the request's
  local limit = req.scan
  if src.scan then limit = math.min(limit, scanned + src.scan) end
  norms[si] = {0, 0}
  if X then trace[si] = {0, 0, false, false} end
  -- the recent items' co-occurrence is read only when this link is needed
  if src.k == 'session' and src.pages == nil and n_chosen < cap then
    if not INLINE then return {'need'} end
    INLINE.session(src, req)
  end
  if n_chosen < cap and src.k ~= 'none' then
    if X then trace[si][1] = 1 end
    if src.k == 'zset' then
      if X then
        trace[si][2] = tonumber(ok(redis.pcall('ZCARD', src.key))) or 0
        if req.at and (src.key == req.at[3] or src.key == req.at[4]) then
          trace[si][3] = ok(redis.pcall('HGET', req.at[1], req.at[2])) or false
        end
      end
      local start, first = 0, true
      -- a category promotion reads its category's items (then neither scan below runs)
      local read = src.lc and CSETS and promoted_category(si, src, cap, limit)
      if not read and X and COLS_READY and F.cat then
        read = traced_category(si, src, cap, limit)
      end
      if COLS and not read then
        -- the normaliser's first page from its two ends, then pages of ids only
        first_page_norm(si, src.key)
        if not (F.cat and consider_category(si, src, cap, limit)) then
          while n_chosen < cap and scanned < limit do
            local got = consider_ids(si, src, start, 4 * req.page, cap, limit)
            if got < 4 * req.page then break end
            start = start + 4 * req.page
          end
        end
      end
      while not read and not COLS and n_chosen < cap and scanned < limit do
        local page, got = zset_page(src.key, start, req.page)
        if first then note_norm(si, page, #page); first = false end
        for i, p in ipairs(page) do
          if n_chosen >= cap or scanned >= limit then break end
          consider(si, src, start + i - 1, p)
        end
        if got < req.page then break end
        start = start + req.page
      end
      if BAND and not src.scan and n_chosen < cap and scanned >= limit then
        -- the budget ran out before the set's end (or before the set): its price band
        if first and not COLS and not read then first_page_norm(si, src.key) end
        price_band(si, src, cap)
      end
    elseif src.k == 'json' and lazy_list_on(src) then
      if X then trace[si][2], trace[si][4], trace[si][3] = json_meta(lazy_raw) end
      local list = lazy
      norms[si] = {list.lo, list.hi}
      if COLS then
        -- a filtered scan reads entries in batches of ids (the worker's shape, checked
        -- by lazy_list): score and reason only for what passes. A batch after the first
        -- is sized by the share that passed so far (a quarter of the items passing a
        -- price band: 46 entries read for 10 where doubling batches read 66).
        local raw, pos, done, size, chosen0 = lazy_raw, list.start, 0, 2 * cap + 2, n_chosen
        while pos and n_chosen < cap and scanned < limit do
          local ids, from, to = {}, {}, {}
          local got
          got, pos = list_entries(raw, pos, size, ids, from, to)
          if got == 0 then break end
          consider_found(si, src, ids, done, nil, cap, limit, false, function(j)
            local text, why = entry_parts(string.sub(raw, from[j], to[j]))
            return text ~= nil and {ids[j], false, text, why}
          end)
          done = done + got
          local passed = math.max(n_chosen - chosen0, 1)
          size = math.min(4 * size, math.ceil(1.25 * (cap - n_chosen) * done / passed) + 2)
        end
      end
      local i = 1
      while not COLS and n_chosen < cap and scanned < limit do
        local p = list.get(i)
        if p == nil then break end
        consider(si, src, i - 1, p)
        i = i + 1
      end
    else
      local list, via
      if src.k == 'json' then
        list = json_pairs(lazy_raw)
        if X then trace[si][2], trace[si][4], trace[si][3] = json_meta(lazy_raw) end
      elseif src.k == 'list' then list = inline_pairs(src.items)
      elseif src.k == 'session' then list, via = session_pairs(src)
      elseif src.k == 'comp' then list, via = complement_pairs(src)
      elseif src.k == 'again' then list = again_pairs(src)
      elseif src.k == 'ids' then
        -- a fixed list of ids (the items of a promotion), first = best
        list = {}
        for _, id in ipairs(src.ids or {}) do
          if valid_id(id) then list[#list + 1] = {id, #src.ids - #list} end
        end
      else list = {} end
      if X and src.k ~= 'json' then
        trace[si][2] = #list
        if src.w then trace[si][3] = src.w end  -- newest cart item / purchase (api.gather)
      end
      note_norm(si, list, #list)
      if COLS then
        for from = 1, #list, req.page do
          if n_chosen >= cap or scanned >= limit then break end
          local batch = {}
          for j = from, math.min(#list, from + req.page - 1) do batch[#batch + 1] = list[j] end
          consider_batch(si, src, batch, from - 1, via, cap, limit)
        end
      else
        for i, p in ipairs(list) do
          if n_chosen >= cap or scanned >= limit then break end
          consider(si, src, i - 1, p, via and via[p[1]])
        end
      end
    end
  end
end
local items_end = n_out

-- names of the items the reasons mention: each item's via and the request's anchors
out[n_out + 1] = 0
n_out = n_out + 1
if any_via or req.an then
  local named, names = {}, {}
  for _, id in ipairs(req.an or {}) do named[id] = true; names[#names + 1] = id end
  for at = HEAD + 11, items_end, 11 do
    local id = out[at]
    if id and not named[id] then named[id] = true; names[#names + 1] = id end
  end
  out[n_out] = #names
  for _, id in ipairs(names) do
    local name = ok(redis.pcall('HGET', req.meta[1] .. id .. req.meta[2], 'name'))
    if type(name) ~= 'string' or name == '' then name = false end
    out[n_out + 1] = id
    out[n_out + 2] = name
    n_out = n_out + 2
  end
end

-- the trace: each link's consulted flag, size, write time and model version, then the
-- dropped candidates (their total, how many follow, then id and why of each)
if X then
  for si = 1, L do
    local t = trace[si]
    out[n_out + 1], out[n_out + 2], out[n_out + 3], out[n_out + 4] = t[1], t[2], t[3], t[4]
    n_out = n_out + 4
  end
  out[n_out + 1], out[n_out + 2] = dropped_total, n_dropped
  n_out = n_out + 2
  for i = 1, n_dropped do
    out[n_out + 1], out[n_out + 2] = dropped[i][1], dropped[i][2]
    n_out = n_out + 2
  end
end

local t0 = false
if req.t0 then t0 = ok(redis.pcall('GET', req.t0)) or false end
local v = ok(redis.pcall('GET', req.v))
if type(v) ~= 'string' then v = false end
-- the reply's head: 'ok', version, t0, affinity lo/hi, link count, item count, each
-- link's lo/hi
out[1], out[2], out[3], out[4], out[5], out[6], out[7] = 'ok', v, t0, num(aff_lo or 0),
                                                         num(aff_hi or 0), L, n_chosen
for si = 1, L do
  out[6 + 2 * si] = num(norms[si][1])
  out[7 + 2 * si] = num(norms[si][2])
end
return out
