-- KEYS[1] = rate-limit state key; ARGV = emission interval (s), burst (requests).
local wait = rate_limited(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
return tostring(wait)
