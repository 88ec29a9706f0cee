-- Shared by the session scripts (spliced in where each has its include marker).
-- A session hash: u user id, c created (ms), a last activity (ms), i idle ttl (ms), x absolute
-- expiry (ms), e current expiry (ms), m metadata JSON, s data bytes, r rotated (ms),
-- d:<name> the JSON text of one top-level data field.

-- HSET in chunks: unpack of a long table would overflow Lua's C stack.
local function hset_all(key, fields)
  for i = 1, #fields, 1000 do
    redis.call('HSET', key, unpack(fields, i, math.min(i + 999, #fields)))
  end
end

-- The index expires with its longest-lived member (its highest score).
local function expire_index(index)
  local top = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
  if top[2] then redis.call('PEXPIREAT', index, top[2]) end
end

-- Slides the idle expiry of a session (never past its absolute expiry); returns the new expiry.
-- `user`, `idle` and `abs` are the session's u, i and x fields, already read by the caller.
local function slide(key, index_prefix, id, now, user, idle, abs)
  local exp = math.min(now + tonumber(idle), tonumber(abs))
  redis.call('HSET', key, 'a', now, 'e', exp)
  redis.call('PEXPIREAT', key, exp)
  local index = index_prefix .. user
  if redis.call('ZADD', index, exp, id) == 1 then
    expire_index(index) -- a member (or the index) was missing: recompute its expiry
  else
    redis.call('PEXPIREAT', index, exp, 'GT') -- a later expiry only ever extends the index
  end
  return exp
end
