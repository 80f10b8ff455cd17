-- KEYS[1] = rate-limit state key; ARGV = emission interval (s), burst (requests), lease
-- size (requests). Returns {charged, wait_s}: charged > 0 admitted (gcra_lease).
local charged, wait = gcra_lease(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]),
                                 tonumber(ARGV[3]))
return {charged, tostring(wait)}
