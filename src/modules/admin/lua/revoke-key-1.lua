--[[
  Revokes an API key and tells every gateway replica to forget it at once.

  KEYS[1]  the key record (hash): _gw:apikey:<keyId>
  ARGV[1]  the tenant the caller may act on, or '*' for the operator (ADMIN_TOKEN)
  ARGV[2]  revocation time, Unix ms
  ARGV[3]  the revocation channel
  ARGV[4]  key id (the message published)

  Returns  1 when revoked now; 0 when it was already revoked; -1 when there is no such key for
           that tenant (the same answer as for a key that does not exist).
]]
local tenant = redis.call('HGET', KEYS[1], 'tenant')
if not tenant or (ARGV[1] ~= '*' and tenant ~= ARGV[1]) then
  return -1
end
if redis.call('HEXISTS', KEYS[1], 'revokedAt') == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'revokedAt', ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
