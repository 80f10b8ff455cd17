-- SERVE, part 3 of 4 (api.serve_script): category promotions, traced category reads, the
-- price band read from the price index, and the per-link helpers of the chain below.
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

