--[[
  Deletes a cache entry, optionally only if its etag matches, and removes it from its tag sets.

  KEYS[1]  the entry: <tenant>:cache:<key>
  ARGV[1]  condition: '' none; 'match' the current etag must equal ARGV[2] (If-Match)
  ARGV[2]  the etag expected by 'match'
  ARGV[3]  prefix of the tenant's tag sets (<tenant>:tag:, from redis/keys.ts)

  Returns  1 deleted; 0 there was no entry; -1 the condition failed (nothing changed).
]]
local old = redis.call('GET', KEYS[1])
local etag, tags = nil, ''
if old and string.byte(old, 1) == 1 then
  local nl = string.find(old, '\n', 4, true)
  if nl then
    local _, _, e, t = string.match(string.sub(old, 4, nl - 1), '^(%d*),(%d*),([^,]*),(.*)$')
    etag, tags = e, t or ''
  end
end
if ARGV[1] == 'match' and (not old or etag ~= ARGV[2]) then return -1 end
if not old then return 0 end
for t in string.gmatch(tags, '[^|]+') do
  redis.call('SREM', ARGV[3] .. t, KEYS[1])
end
redis.call('UNLINK', KEYS[1])
return 1
