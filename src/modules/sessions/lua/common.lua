-- Shared by the session scripts (spliced in where each has its include marker).
-- A session hash: u user id, c created (ms), i idle ttl (ms), x absolute expiry (ms), a last
-- activity (ms; see below), e expiry at create (ms; see below), z the session's score in the
-- user's index (ms), m metadata JSON, s data bytes, r rotated (ms), d:<name> the JSON text of one
-- top-level data field.
--
-- The session's current expiry is the key's own (PEXPIRETIME), and its last activity follows
-- from it: expiry - idle ttl, except once a slide reached the absolute expiry, from when on the
-- `a` field holds it (create writes `a` too). So a touch writes one thing, the key's expiry (or
-- the `a` field once capped): one command to replicate and append to the AOF instead of a
-- MULTI/EXEC of HSET and PEXPIREAT. The scripts return the derived last activity and expiry
-- after the stored fields (the gateway takes the last value of a field), so the `a` and `e` an
-- older version wrote on every slide are ignored (a plain read, HGETALL and PEXPIRETIME, derives
-- them the same way in the gateway: service.ts, parseSessionHash). Create still writes `e`:
-- during a rolling upgrade, instances of the older version read it (they then answer with the
-- expiry as of the create or of their own last slide, until they are replaced).

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

-- The last activity and expiry of a session: `idle`, `abs` and `stored_a` are its i, x and a
-- fields. Returns last activity, expiry (Unix ms).
local function times(key, idle, abs, stored_a)
  local exp = redis.call('PEXPIRETIME', key)
  if exp >= tonumber(abs) then return tonumber(stored_a), exp end
  return exp - tonumber(idle), exp
end

-- Slides the idle expiry of a session (never past its absolute expiry, never backwards: a
-- gateway whose clock runs behind another's cannot shorten a session). `user`, `idle`, `abs` and
-- `score` are the session's u, i, x and z fields, `cur` its current expiry, all read by the
-- caller. Returns the new last activity and expiry.
local function slide(key, index_prefix, id, now, user, idle, abs, score, cur)
  idle = tonumber(idle)
  abs = tonumber(abs)
  local exp = math.min(now + idle, abs)
  local last = exp - idle
  if exp >= abs then
    -- The expiry no longer tells the last activity: it is stored.
    redis.call('HSET', key, 'a', now)
    last = now
    if cur >= abs then return last, cur end
  elseif exp <= cur then
    return cur - idle, cur
  end
  redis.call('PEXPIREAT', key, exp)
  if exp - (tonumber(score) or 0) <= math.min(INDEX_LAG_MAX, idle / 10) then return last, exp end
  redis.call('HSET', key, 'z', exp)
  local index = index_prefix .. user
  if redis.call('ZADD', index, exp, id) == 1 then
    expire_index(index) -- a member (or the index) was missing: recompute its expiry
  else
    -- a later expiry only ever extends the index
    redis.call('PEXPIREAT', index, exp + INDEX_LAG_MAX, 'GT')
  end
  return last, exp
end

-- A session's fields as HGETALL returns them (false when it does not exist), and its u, i, x, z
-- and a fields picked out of them.
local function read_all(key)
  local h = redis.call('HGETALL', key)
  if #h == 0 then return false end
  local user, idle, abs, score, stored_a
  for j = 1, #h, 2 do
    local f = h[j]
    if f == 'u' then user = h[j + 1]
    elseif f == 'i' then idle = h[j + 1]
    elseif f == 'x' then abs = h[j + 1]
    elseif f == 'z' then score = h[j + 1]
    elseif f == 'a' then stored_a = h[j + 1]
    end
  end
  return h, user, idle, abs, score, stored_a
end

-- Appends a session's last activity and expiry to a field list: they override the stored `a`
-- and `e` (the gateway takes a field's last value).
local function with_times(h, last, exp)
  h[#h + 1] = 'a'
  h[#h + 1] = last
  h[#h + 1] = 'e'
  h[#h + 1] = exp
  return h
end
