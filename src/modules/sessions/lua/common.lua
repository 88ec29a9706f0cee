-- Shared by the session scripts (spliced in where each has its include marker).
-- A session hash: u user id, c created (ms), a last activity (ms), i idle ttl (ms), x absolute
-- expiry (ms), e current expiry (ms), z its score in the user's index (ms), m metadata JSON,
-- s data bytes, r rotated (ms), d:<name> the JSON text of one top-level data field.

-- The user's index scores each session by its expiry, but a slide rewrites that score only once
-- the expiry has moved past it by more than a tenth of the idle ttl (at most INDEX_LAG_MAX ms):
-- most touches then write the hash alone (the index writes were about a quarter of a touch's
-- cost on the master and two fifths of it on each replica). So a score may trail the true expiry by up to
-- INDEX_LAG_MAX: ids scored before now - INDEX_LAG_MAX are certainly gone, those scored within
-- INDEX_LAG_MAX before now are checked one by one, and the index key outlives its top score by
-- INDEX_LAG_MAX.
local INDEX_LAG_MAX = 60000

-- Drops the index entries of sessions that no longer exist.
local function prune_index(index, session_prefix, now)
  redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. (now - INDEX_LAG_MAX))
  local maybe = redis.call('ZRANGE', index, now - INDEX_LAG_MAX, now, 'BYSCORE')
  for _, id in ipairs(maybe) do
    if redis.call('EXISTS', session_prefix .. id) == 0 then redis.call('ZREM', index, id) end
  end
end

-- HSET in chunks: unpack of a long table would overflow Lua's C stack.
local function hset_all(key, fields)
  for i = 1, #fields, 1000 do
    redis.call('HSET', key, unpack(fields, i, math.min(i + 999, #fields)))
  end
end

-- The index outlives its longest-lived member (its highest score, which may trail).
local function expire_index(index)
  local top = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
  if top[2] then redis.call('PEXPIREAT', index, tonumber(top[2]) + INDEX_LAG_MAX) end
end

-- Slides the idle expiry of a session (never past its absolute expiry); returns the new expiry.
-- `user`, `idle`, `abs` and `score` are the session's u, i, x and z fields, read by the caller.
local function slide(key, index_prefix, id, now, user, idle, abs, score)
  idle = tonumber(idle)
  local exp = math.min(now + idle, tonumber(abs))
  if exp - (tonumber(score) or 0) <= math.min(INDEX_LAG_MAX, idle / 10) then
    redis.call('HSET', key, 'a', now, 'e', exp)
    redis.call('PEXPIREAT', key, exp)
    return exp
  end
  redis.call('HSET', key, 'a', now, 'e', exp, 'z', exp)
  redis.call('PEXPIREAT', key, exp)
  local index = index_prefix .. user
  if redis.call('ZADD', index, exp, id) == 1 then
    expire_index(index) -- a member (or the index) was missing: recompute its expiry
  else
    -- a later expiry only ever extends the index
    redis.call('PEXPIREAT', index, exp + INDEX_LAG_MAX, 'GT')
  end
  return exp
end
