--[[
  Rotates a session id (session fixation defence): the data moves to the new id, the old id is
  gone in the same step, and the user's index follows. Expiry is unchanged.

  KEYS[1]  the current session: <tenant>:session:<old id>
  KEYS[2]  the new session key: <tenant>:session:<new id>
  ARGV[1]  now (Unix ms)
  ARGV[2]  prefix of the tenant's user indexes (<tenant>:usess:)
  ARGV[3]  the old id
  ARGV[4]  the new id

  Returns  false when the session does not exist; {-1} the new id exists (never expected);
           else the new session as field, value, ..., its last activity and
           expiry last (see common.lua)
]]
-- @include
local cur = redis.call('HMGET', KEYS[1], 'u', 'i', 'x', 'a')
local user = cur[1]
if not user then return false end
if redis.call('EXISTS', KEYS[2]) == 1 then return {-1} end
redis.call('RENAME', KEYS[1], KEYS[2]) -- keeps the expiry
local last, exp = times(KEYS[2], cur[2], cur[3], cur[4])
redis.call('HSET', KEYS[2], 'r', ARGV[1], 'z', exp)
local index = ARGV[2] .. user
redis.call('ZREM', index, ARGV[3])
redis.call('ZADD', index, exp, ARGV[4])
expire_index(index) -- the ZREM may have emptied (deleted) the index: ZADD made it anew
return with_times(redis.call('HGETALL', KEYS[2]), last, exp)
