--[[
  Starts (or continues) deleting a tenant: marks its record as being deleted, so no key can be
  issued for it and its id cannot be created again until its data is erased; deletes its API
  keys and tells every gateway replica to forget each at once; deletes its rate-limit policies
  and tells every replica (which also drops the rate-limit denials it remembers). Erasing the
  tenant's data (`<tenant>:*`) is the caller's next step. Called again (each call of the
  erasure does), it deletes keys that came back with a failover; otherwise nothing changes.

  KEYS[1]  the tenant record (hash): _gw:tenant:<tenant>
  KEYS[2]  the tenant's key index (set): _gw:tenant-apikeys:<tenant>
  KEYS[3]  the tenant's rate-limit policies (hash): _gw:rl-policies:<tenant>
  ARGV[1]  now, Unix ms (the deletingAt mark; kept from the first call)
  ARGV[2]  the prefix of key records, _gw:apikey: (the ids read from KEYS[2] are appended)
  ARGV[3]  the revocation channel (message: a key id)
  ARGV[4]  the policies channel (message: the tenant id)
  ARGV[5]  tenant id

  Returns  -1 when there is no such tenant; else the number of API keys deleted now.
]]
if redis.call('EXISTS', KEYS[1]) == 0 then
  return -1
end
local first = redis.call('HEXISTS', KEYS[1], 'deletingAt') == 0
if first then
  redis.call('HSET', KEYS[1], 'deletingAt', ARGV[1])
end
local ids = redis.call('SMEMBERS', KEYS[2])
for _, id in ipairs(ids) do
  redis.call('UNLINK', ARGV[2] .. id)
  redis.call('PUBLISH', ARGV[3], id)
end
redis.call('UNLINK', KEYS[2])
-- The policies message also makes every replica drop its remembered rate-limit denials.
if redis.call('UNLINK', KEYS[3]) == 1 or first then
  redis.call('PUBLISH', ARGV[4], ARGV[5])
end
return #ids
