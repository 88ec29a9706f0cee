--[[
  Stores a new API key record for an existing tenant.

  KEYS[1]  the tenant record (hash): _gw:tenant:<tenant>
  KEYS[2]  the key record (hash): _gw:apikey:<keyId>
  KEYS[3]  the tenant's key index (set): _gw:tenant-apikeys:<tenant>
  ARGV[1]  key id
  ARGV[2..] field, value, field, value, ... of the record (the secret is never passed, only its
            SHA-256)

  Returns  1 when stored; -1 when the tenant does not exist or is being deleted; -2 when the key
           id is taken.
]]
if redis.call('EXISTS', KEYS[1]) == 0 or redis.call('HEXISTS', KEYS[1], 'deletingAt') == 1 then
  return -1
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return -2
end
redis.call('HSET', KEYS[2], unpack(ARGV, 2))
redis.call('SADD', KEYS[3], ARGV[1])
return 1
