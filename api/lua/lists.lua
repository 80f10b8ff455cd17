-- Reading the candidate lists of the serve script: prepared JSON lists (whole or lazily),
-- sorted-set pages and merged totals. Pure helpers: no request state.

local function ok(r)
  if type(r) == 'table' and r.err then return nil end
  return r
end
-- the id rule of core.limits.id_problem: 1..MAX_ID_LEN characters (UTF-8 sequences:
-- the bytes that do not continue one, counted only beyond MAX_ID_LEN bytes), no
-- C0/DEL/C1 control characters (C1 as UTF-8: 0xC2 0x80-0x9F)
-- (printable ASCII, nearly every id, is one class scan: the full rule costs twice that)
local function valid_id(x)
  if type(x) ~= 'string' or #x == 0 or #x > @MAX_ID_BYTES@ then return false end
  if #x > @MAX_ID_LEN@ and select(2, string.gsub(x, '[^\128-\191]', '')) > @MAX_ID_LEN@ then
    return false
  end
  if not string.find(x, '[^ -~]') then return true end
  return not string.find(x, '%c')
    and not (string.find(x, '\194', 1, true) and string.find(x, '\194[\128-\159]'))
end
local function finite(x)
  x = tonumber(x)
  if x == nil or x ~= x or x == math.huge or x == -math.huge then return nil end
  return x
end
local function key(parts, id) return parts[1] .. id .. parts[2] end

-- prepared list {"items": [[id, score(, reason)], ...]} (or a bare list) -> entries
-- {id, score, false, reason or false, position}, best first
local function json_pairs(raw)
  if type(raw) ~= 'string' then return {} end
  local okd, doc = pcall(cjson.decode, raw)
  if not okd or type(doc) ~= 'table' then return {} end
  local items = doc
  if doc.items ~= nil then items = doc.items end
  if type(items) ~= 'table' then return {} end
  local pairs_, n = {}, 0
  for i, e in ipairs(items) do
    local id, s, why
    if type(e) == 'table' then
      if e[1] ~= nil then id, s, why = e[1], finite(e[2]), e[3]
      else id, s = e.item_id, finite(e.score) end
    end
    if valid_id(id) and s ~= nil then
      n = n + 1
      if type(why) ~= 'string' then why = false end
      pairs_[n] = {id, s, false, why, i}
    end
  end
  -- The worker writes lists best first: sort only when one is not.
  for i = 2, n do
    if pairs_[i][2] > pairs_[i - 1][2] then
      table.sort(pairs_, function(a, b)
        if a[2] ~= b[2] then return a[2] > b[2] end
        return a[5] < b[5]
      end)
      break
    end
  end
  return pairs_
end

-- The worker's own list text, read lazily: {"v": ..., "items": [["id", score], ...], ...}
-- best first, an entry optionally carrying a third element, the source that put it
-- there (["id", score, "reason"]: the blended lists of stream.processor). Decoding a
-- whole 100-item list with cjson was most of the script's time although a request looks
-- at its first dozen entries, so entries are matched one by one as the scan needs them,
-- keeping each score's text (returned as it was stored). The lowest score (for the
-- normaliser) is the last entry's. Anything else -- escapes, other shapes, a score out
-- of order within what was read -- is handed to json_pairs whole. `trusted` skips the id
-- rule (the caller checks every id it keeps another way: the catalog columns).
local ENTRY = '^%["([^"]*)",([-%d.eE+]+)([%],])'
local REASON = '^"([%w_]*)"%]'
local function lazy_list(raw, trusted)
  if type(raw) ~= 'string' or string.find(raw, '\\', 1, true) then return nil end
  local at = string.find(raw, '"items":[', 1, true)
  if not at then return nil end
  local tail = math.max(at, #raw - 100)
  local lo = finite(string.match(raw, '",([-%d.eE+]+)%]%]', tail)
                    or string.match(raw, '",([-%d.eE+]+),"[%w_]*"%]%]', tail))
  if lo == nil then return nil end
  local list = {lo = lo, hi = lo, start = at + 9}
  local entries, n, pos, prev, full = {}, 0, at + 9, math.huge, nil
  function list.get(i)
    if full then return full[i] end
    while n < i do
      local a, b, id, text, close = string.find(raw, ENTRY, pos)
      local s = a and tonumber(text)
      local why = false
      if s ~= nil and close == ',' then
        local c, d, r = string.find(raw, REASON, b + 1)
        if c == nil then s = nil else why = r; b = d end
      end
      if s == nil or s > prev or s < lo then
        if a == nil and string.sub(raw, pos, pos) == ']' then return nil end
        full = json_pairs(raw)  -- not the worker's shape after all
        return full[i]
      end
      prev = s
      pos = b + 1
      if string.byte(raw, pos) == 44 then pos = pos + 1 end  -- ','
      if s == math.huge then s = nil end  -- within [lo, prev]: only +inf is not finite
      if s ~= nil and (trusted or valid_id(id)) then
        n = n + 1
        entries[n] = {id, s, text, why}
        if n == 1 then list.hi = s end
      end
    end
    return entries[i]
  end
  if list.get(1) == nil and not full then list.lo = 0; list.hi = 0 end
  if full then
    list.lo, list.hi = nil, nil
    for _, p in ipairs(full) do
      if list.lo == nil or p[2] < list.lo then list.lo = p[2] end
      if list.hi == nil or p[2] > list.hi then list.hi = p[2] end
    end
    list.lo, list.hi = list.lo or 0, list.hi or 0
  end
  return list
end

-- A filtered scan's reading of the worker's list text (lazy_list checked its shape):
-- up to `count` entries from byte `pos` on, found with plain searches -- a filtered scan
-- reads far more entries than it keeps, and matching each with a pattern was a seventh
-- of a category-filtered request. Fills `ids` and, per entry, where the text after its
-- id starts and ends (`from`, `to`: 'score' or 'score,"reason"'; see entry_parts) from
-- index 1; returns how many and the position of the next entry (nil: the list ended).
local function list_entries(raw, pos, count, ids, from, to)
  local k = 0
  while pos and k < count do
    local a = string.find(raw, '["', pos, true)
    local b = a and string.find(raw, '"', a + 2, true)
    local c = b and string.find(raw, ']', b + 1, true)
    if not c then return k, nil end
    k = k + 1
    ids[k], from[k], to[k] = string.sub(raw, a + 2, b - 1), b + 2, c - 1
    if string.byte(raw, c + 1) == 44 then pos = c + 2 else pos = nil end  -- ','
  end
  return k, pos
end
-- the score text and reason (false when none) of an entry's text after its id; nil
-- when it is not the worker's shape
local function entry_parts(text)
  local s, r = string.match(text, '^([-%d.eE+]+),"([%w_]*)"$')
  if s then return s, r ~= '' and r end
  s = string.match(text, '^([-%d.eE+]+)$')
  if s then return s, false end
  return nil
end

local function zset_page(k, start, count)
  local raw = ok(redis.pcall('ZREVRANGE', k, start, start + count - 1, 'WITHSCORES'))
  local out, n = {}, 0
  if type(raw) ~= 'table' then return out, 0 end
  for i = 1, #raw, 2 do
    local s = finite(raw[i + 1])
    if valid_id(raw[i]) and s ~= nil then
      n = n + 1
      out[n] = {raw[i], s, raw[i + 1]}
    end
  end
  return out, #raw / 2
end

-- summed scores of several id lists -> pairs, best first, ties by id
local function merged(totals)
  local out, n = {}, 0
  for id, s in pairs(totals) do n = n + 1; out[n] = {id, s} end
  table.sort(out, function(a, b)
    if a[2] ~= b[2] then return a[2] > b[2] end
    return a[1] < b[1]
  end)
  return out
end
