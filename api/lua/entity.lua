-- One entity's serving inputs, from its own slot (api.gather): KEYS = its personal list,
-- recent list, purchases, cart; ARGV = '1'/'0' per key (read it?), then how many
-- purchases and cart items to read (the worker keeps at most these many), then '1' for
-- an explain trace.
-- Returns {personal list text or false, recent list text or false,
--          [purchased items, newest first], [cart items, newest first]}, and with the
-- trace the event times of the newest purchase and cart item (text, or false).
-- A wrongly typed key reads as empty, never as an error.
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
if ARGV[1] == '1' then out[1] = text(KEYS[1]) end
if ARGV[2] == '1' then out[2] = text(KEYS[2]) end
if ARGV[3] == '1' then out[3] = newest(KEYS[3], tonumber(ARGV[5])) end
if ARGV[4] == '1' then out[4] = newest(KEYS[4], tonumber(ARGV[6])) end
if ARGV[7] == '1' then
  for i = 3, 4 do
    local r = redis.pcall('ZREVRANGE', KEYS[i], 0, 0, 'WITHSCORES')
    out[i + 2] = (type(r) == 'table' and not r.err and r[2]) or false
  end
end
return out
