--[[
  Changes an API key's name, scopes or expiry, and tells every gateway replica to drop its cached
  copy at once (the revocation channel: a replica that drops a key reads it again on its next use).

  KEYS[1]  the key record (hash): _gw:apikey:<keyId>
  ARGV[1]  the tenant the key must belong to
  ARGV[2]  the channel (message: the key id)
  ARGV[3]  key id
  ARGV[4]  '1' to remove the expiry (the key never expires), else ''
  ARGV[5..] field, value, field, value, ... to set (name, scopes as JSON, expiresAt in Unix ms)

  Returns  1 changed; -1 no such key in that tenant (the same answer as for a key that does not
           exist); -2 the key is revoked (nothing changed).
]]
local tenant = redis.call('HGET', KEYS[1], 'tenant')
if not tenant or tenant ~= ARGV[1] then
  return -1
end
if redis.call('HEXISTS', KEYS[1], 'revokedAt') == 1 then
  return -2
end
if #ARGV >= 5 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 5))
end
if ARGV[4] == '1' then
  redis.call('HDEL', KEYS[1], 'expiresAt')
end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
