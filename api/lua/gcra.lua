-- GCRA rate limits on the server clock (TIME), so many API processes share one limit
-- without skew; used by rate_limit.lua, the serve script and rate_limit_events.lua (see
-- api.serve_script). A bucket's key holds its theoretical arrival time (TAT).

local function gcra_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

-- Charging `cost` units (requests, events) at once to the bucket `key` (interval:
-- seconds per unit; burst: units allowed at once; an idle bucket admits one charge
-- larger than its burst): returns the wait (> 0: refused, seconds until it would be
-- admitted) and the bucket's TAT after the charge. Stores nothing.
local function gcra_check(key, interval, burst, cost, now)
  local tat = tonumber(redis.pcall('GET', key))
  if tat == nil or tat < now then tat = now end
  local new_tat = tat + cost * interval
  return new_tat - now - math.max(burst, cost) * interval, new_tat
end

-- Stores a TAT from gcra_check; the key expires once the bucket has drained.
local function gcra_store(key, new_tat, now)
  redis.call('SET', key, string.format('%.6f', new_tat), 'PX',
             math.ceil((new_tat - now) * 1000) + 1)
end

-- One request against one key: 0 when allowed (and charged), else the seconds until the
-- next request would be allowed.
local function rate_limited(key, interval, burst)
  local now = gcra_now()
  local wait, new_tat = gcra_check(key, interval, burst, 1, now)
  if wait > 0 then return wait end
  gcra_store(key, new_tat, now)
  return 0
end

-- A lease (api.rate_lease): up to `want` requests charged to `key` at once, for one API
-- process to admit itself: all of them when they fit, else as many as fit now, at least
-- one. Returns the count charged, and 0 with the wait of a single request (rate_limited's)
-- when not even one fits.
local function gcra_lease(key, interval, burst, want)
  local now = gcra_now()
  local wait, new_tat = gcra_check(key, interval, burst, 1, now)
  if wait > 0 then return 0, wait end
  local take = 1
  if want > 1 then
    local tat = new_tat - interval
    take = math.max(1, math.min(want, math.floor((now - tat) / interval + burst)))
    wait, new_tat = gcra_check(key, interval, burst, take, now)
    while wait > 0 and take > 1 do  -- the floor's rounding: one fewer until it fits
      take = take - 1
      wait, new_tat = gcra_check(key, interval, burst, take, now)
    end
  end
  gcra_store(key, new_tat, now)
  return take, 0
end
