--[[
  Creates a session and indexes it under its user; evicts the user's least recently active
  sessions beyond the per-user cap.

  KEYS[1]  the session: <tenant>:session:<id>
  KEYS[2]  the user's index: <tenant>:usess:<userId> (sorted set, id scored by expiry in ms)
  ARGV[1]  now (Unix ms, from the gateway)
  ARGV[2]  idle ttl (ms)
  ARGV[3]  absolute expiry (Unix ms)
  ARGV[4]  user id
  ARGV[5]  metadata JSON ('{}' when none)
  ARGV[6]  data bytes (field names plus JSON values)
  ARGV[7]  most live sessions per user
  ARGV[8]  prefix of the tenant's session keys (<tenant>:session:)
  ARGV[9]  the session id
  ARGV[10..] data: field name, JSON text, ...

  Returns  {1, evicted} created; {-1, 0} the id exists (never expected: 256 random bits).
]]
-- @include
if redis.call('EXISTS', KEYS[1]) == 1 then return {-1, 0} end
local now = tonumber(ARGV[1])
local exp = math.min(now + tonumber(ARGV[2]), tonumber(ARGV[3]))

prune_index(KEYS[2], ARGV[8], now)
local evicted = 0
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[7]) + 1
if over > 0 then
  -- The least recently active by their last activity (index scores trail it).
  local by = {}
  for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
    local key = ARGV[8] .. id
    local h = redis.call('HMGET', key, 'i', 'x', 'a')
    by[#by + 1] = {id, h[1] and times(key, h[1], h[2], h[3]) or 0}
  end
  table.sort(by, function(p, q)
    if p[2] ~= q[2] then return p[2] < q[2] end
    return p[1] < q[1]
  end)
  for i = 1, over do
    evicted = evicted + redis.call('UNLINK', ARGV[8] .. by[i][1])
    redis.call('ZREM', KEYS[2], by[i][1])
  end
end

-- `e` only for older gateway versions during a rolling upgrade (see common.lua).
local fields = {'u', ARGV[4], 'c', now, 'a', now, 'i', ARGV[2], 'x', ARGV[3], 'e', exp,
  'z', exp, 'm', ARGV[5], 's', ARGV[6]}
for i = 10, #ARGV, 2 do
  fields[#fields + 1] = 'd:' .. ARGV[i]
  fields[#fields + 1] = ARGV[i + 1]
end
hset_all(KEYS[1], fields)
redis.call('PEXPIREAT', KEYS[1], exp)
redis.call('ZADD', KEYS[2], exp, ARGV[9])
expire_index(KEYS[2])
return {1, evicted}
