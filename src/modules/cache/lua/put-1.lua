--[[
  Stores a cache entry and reports whether one existed before.

  KEYS[1]  the entry: <tenant>:cache:<key>
  ARGV[1]  the stored envelope, bytes (format: modules/cache/envelope.ts)
  ARGV[2]  absolute expiry as Unix time in ms (SET ... PXAT); 0 keeps the entry without expiry

  Returns  1 when the entry was created, 0 when an existing entry was replaced.
  The expiry instant comes from the gateway's clock (time is an argument, never TIME); the same
  instant is written into the envelope, so reads compute the remaining TTL without a second call.
]]
local existed = redis.call('EXISTS', KEYS[1])
local at = tonumber(ARGV[2])
if at > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PXAT', at)
else
  redis.call('SET', KEYS[1], ARGV[1])
end
return 1 - existed
