--[[
  Changes an entry's freshness and expiry without changing its value (PATCH .../{key} {ttl}).

  KEYS[1]  the entry: <tenant>:cache:<key>
  ARGV[1]  new end of freshness, Unix ms; 0 = never stale
  ARGV[2]  new expiry, Unix ms (SET ... PXAT); 0 = never expires
  ARGV[3]  prefix of the tenant's tag sets (<tenant>:tag:, from redis/keys.ts)

  Returns  {1, etag} when changed; {0, ''} when there is no entry (or it is of an unknown format).
  The header is rewritten in place; the payload bytes are copied unchanged.
]]
local v = redis.call('GET', KEYS[1])
if not v or string.byte(v, 1) ~= 1 then return {0, ''} end
local nl = string.find(v, '\n', 4, true)
if not nl then return {0, ''} end
local _, _, etag, tags = string.match(string.sub(v, 4, nl - 1), '^(%d*),(%d*),([^,]*),(.*)$')
if not etag then return {0, ''} end
local rewritten = string.sub(v, 1, 3) .. ARGV[1] .. ',' .. ARGV[2] .. ',' .. etag .. ',' .. tags .. string.sub(v, nl)
local at = tonumber(ARGV[2])
if at > 0 then
  redis.call('SET', KEYS[1], rewritten, 'PXAT', at)
else
  redis.call('SET', KEYS[1], rewritten)
end
for t in string.gmatch(tags, '[^|]+') do
  local tagKey = ARGV[3] .. t
  if at == 0 then
    redis.call('PERSIST', tagKey)
  else
    redis.call('PEXPIREAT', tagKey, at, 'GT')
  end
end
return {1, etag}
