-- Tracking limits, counting events (api.tracking_limits). KEYS = bucket keys (per API
-- key, source address, user/anonymous id); ARGV[1] = JSON [[interval_s, burst, cost],
-- ...], one per key. Every bucket is checked with its cost (gcra.lua); when all admit,
-- all are charged, atomically, and the reply is {"0", 0}; else {wait_s, index} of the
-- bucket that waits longest, and none is charged (an abuser over one limit spends nobody
-- else's budget).
local spec = cjson.decode(ARGV[1])
local now = gcra_now()
local new, worst, which = {}, 0, 0
for i, bucket in ipairs(KEYS) do
  local wait, new_tat = gcra_check(bucket, tonumber(spec[i][1]), tonumber(spec[i][2]),
                                   tonumber(spec[i][3]), now)
  if wait > worst then worst, which = wait, i end
  new[i] = new_tat
end
if worst > 0 then return {tostring(worst), which} end
for i, bucket in ipairs(KEYS) do gcra_store(bucket, new[i], now) end
return {'0', 0}
