-- One entity's serving inputs, from its own slot (api.gather): KEYS = its personal list,
-- recent list, purchases, cart; ARGV = '1'/'0' per key (read it?), then how many
-- purchases and cart items to read, then '1' for an explain trace (entity_read.lua).
return entity_read(KEYS, {ARGV[1], ARGV[2], ARGV[3], ARGV[4]}, ARGV[5], ARGV[6], ARGV[7])
