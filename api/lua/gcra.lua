-- GCRA rate limit of one key, shared by rate_limit.lua and serve.lua (see
-- api.serve_script). interval: seconds per request; burst: requests allowed at once.
-- Returns 0 when allowed (and advances the key's theoretical arrival time), else the
-- seconds until the next request would be allowed. Uses the server clock (TIME), so
-- many API processes share one limit without skew.
local function rate_limited(key, interval, burst)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  local tat = tonumber(redis.pcall('GET', key))
  if tat == nil or tat < now then tat = now end
  local new_tat = tat + interval
  local wait = new_tat - now - burst * interval
  if wait > 0 then return wait end
  redis.call('SET', key, string.format('%.6f', new_tat), 'PX',
             math.ceil((new_tat - now) * 1000) + 1)
  return 0
end
