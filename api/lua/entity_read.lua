-- One entity's serving inputs from its own slot: entity.lua answers them to api.gather,
-- inline.lua reads them inside SERVE on one Redis. keys = its personal list, recent
-- list, purchases, cart; want = '1'/'0' per key (read it?); bought_max / cart_max: how
-- many purchases and cart items to read (the worker keeps at most these many); explain:
-- '1' for the event times of the newest purchase and cart item.
-- Returns {personal list text or false, recent list text or false,
--          [purchased items, newest first], [cart items, newest first]} (and the two
-- times, text or false, with explain). A wrongly typed key reads as empty, never fails.
local function entity_read(keys, want, bought_max, cart_max, explain)
  local function text(k)
    local r = redis.pcall('GET', k)
    if type(r) == 'string' then return r end
    return false
  end
  local function newest(k, count)
    local r = redis.pcall('ZREVRANGE', k, 0, count - 1)
    if type(r) == 'table' and not r.err then return r end
    return {}
  end
  local out = {false, false, {}, {}}
  if want[1] == '1' then out[1] = text(keys[1]) end
  if want[2] == '1' then out[2] = text(keys[2]) end
  if want[3] == '1' then out[3] = newest(keys[3], tonumber(bought_max)) end
  if want[4] == '1' then out[4] = newest(keys[4], tonumber(cart_max)) end
  if explain == '1' then
    for i = 3, 4 do
      local r = redis.pcall('ZREVRANGE', keys[i], 0, 0, 'WITHSCORES')
      out[i + 2] = (type(r) == 'table' and not r.err and r[2]) or false
    end
  end
  return out
end
