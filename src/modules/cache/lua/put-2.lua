--[[
  Stores a cache entry, optionally on a condition, keeping tag sets exact, and announces the fill
  of a leased key so that readers waiting on the lease answer at once.

  KEYS[1]  the entry: <tenant>:cache:<key>
  KEYS[2]  its stampede lease: <tenant>:lease:<key>
  ARGV[1]  the stored envelope (format: modules/cache/envelope.ts; header
           "\1" enc cmp freshUntil "," expiresAt "," etag "," tags "\n")
  ARGV[2]  expiry as Unix time in ms (SET ... PXAT); 0 keeps the entry without expiry
  ARGV[3]  condition: '' none; 'match' the current etag must equal ARGV[4] (If-Match);
           'absent' no entry may exist (If-None-Match: *)
  ARGV[4]  the etag expected by 'match'
  ARGV[5]  the lease token the writer holds, or ''
  ARGV[6]  prefix of the tenant's tag sets (<tenant>:tag:, from redis/keys.ts); a tag set is the
           prefix followed by the tag
  ARGV[7]  the entry's tags, '|'-separated, or ''
  ARGV[8]  channel announcing fills of leased keys
  ARGV[9]  message announcing this fill (the entry key)

  Returns  {status, created, leaseReleased}: status 1 stored, -1 condition failed (nothing
           changed); created 1 when no entry existed before; leaseReleased 1 when ARGV[5] was the
           lease's token (the lease is gone).
  Tag sets expire with their longest-lived member (PEXPIREAT ... GT) and never while a member
  lives without expiry; each write prunes members whose entries are gone (sampling two). Times
  come from the gateway (ARGV), never from TIME.
]]
local function split(s)
  local out = {}
  for part in string.gmatch(s, '[^|]+') do out[#out + 1] = part end
  return out
end

local old = redis.call('GET', KEYS[1])
local oldEtag, oldTags = nil, ''
if old and string.byte(old, 1) == 1 then
  local nl = string.find(old, '\n', 4, true)
  if nl then
    local _, _, e, t = string.match(string.sub(old, 4, nl - 1), '^(%d*),(%d*),([^,]*),(.*)$')
    oldEtag, oldTags = e, t or ''
  end
end
if ARGV[3] == 'match' and oldEtag ~= ARGV[4] then return {-1, 0, 0} end
if ARGV[3] == 'absent' and old then return {-1, 0, 0} end

local newTags = split(ARGV[7])
local keep = {}
for _, t in ipairs(newTags) do keep[t] = true end
for _, t in ipairs(split(oldTags)) do
  if not keep[t] then redis.call('SREM', ARGV[6] .. t, KEYS[1]) end
end

local at = tonumber(ARGV[2])
if at > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PXAT', at)
else
  redis.call('SET', KEYS[1], ARGV[1])
end
for _, t in ipairs(newTags) do
  local tagKey = ARGV[6] .. t
  local existed = redis.call('EXISTS', tagKey)
  redis.call('SADD', tagKey, KEYS[1])
  if at == 0 then
    redis.call('PERSIST', tagKey)
  elseif existed == 0 then
    redis.call('PEXPIREAT', tagKey, at)
  else
    redis.call('PEXPIREAT', tagKey, at, 'GT')
  end
  -- A member whose entry expired, or went by a prefix or pattern invalidation, stays in the set
  -- until the set expires, which is never while one member lives without expiry. Each write
  -- samples two members and drops those gone, so a set holds at most about twice its live
  -- entries (a write adds at most one member and removes twice the stale fraction).
  if existed == 1 then
    for _, m in ipairs(redis.call('SRANDMEMBER', tagKey, 2)) do
      if m ~= KEYS[1] and redis.call('EXISTS', m) == 0 then redis.call('SREM', tagKey, m) end
    end
  end
end

local released = 0
local holder = redis.call('GET', KEYS[2])
if holder then
  redis.call('PUBLISH', ARGV[8], ARGV[9])
  if holder == ARGV[5] then
    redis.call('DEL', KEYS[2])
    released = 1
  end
end
if old then return {1, 0, released} end
return {1, 1, released}
