-- SERVE, part 2 of 4 (api.serve_script): `consider`, the serving rules and filters one
-- candidate passes, and the catalog-column prefilters that test a page of candidates at once.
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
  if not src.rebuy and bought_set[id] then
    -- a purchase the buy-again link re-offers (checkout) is left to it, unblocked: a
    -- promotion never serves a purchased item (API.md), and hiding it here hid it there
    if rebuyable[id] then return end
    blocked[id] = true
    if X then drop(id, 'purchased') end
    return
  end
  blocked[id] = true
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

