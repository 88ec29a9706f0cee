--[[
  Creates a tenant unless it exists.

  KEYS[1]  the tenant record (hash): _gw:tenant:<id>
  KEYS[2]  the set of every tenant id: _gw:tenants
  ARGV[1]  tenant id
  ARGV[2]  display name
  ARGV[3]  creation time, Unix ms

  Returns  1 when created, 0 when the tenant already existed (nothing changed).
]]
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'name', ARGV[2], 'createdAt', ARGV[3])
redis.call('SADD', KEYS[2], ARGV[1])
return 1
