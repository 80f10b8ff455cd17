-- SERVE, part 4 of 4 (api.serve_script): the fallback chain, link by link, then the reply.
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
-- the reply's head: 'ok' (SERVE_ONE with a lease: the count it charged), version, t0,
-- affinity lo/hi, link count, item count, each link's lo/hi
out[1] = INLINE and INLINE.leased or 'ok'
out[2], out[3], out[4], out[5], out[6], out[7] = v, t0, num(aff_lo or 0), num(aff_hi or 0),
                                                 L, n_chosen
for si = 1, L do
  out[6 + 2 * si] = num(norms[si][1])
  out[7 + 2 * si] = num(norms[si][2])
end
return out
