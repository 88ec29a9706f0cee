--[[
  One page of a user's live sessions, most recently active first; prunes expired index entries.

  KEYS[1]  the user's index: <tenant>:usess:<userId>
  ARGV[1]  now (Unix ms)
  ARGV[2]  prefix of the tenant's session keys (<tenant>:session:)
  ARGV[3]  offset (rank, 0-based)
  ARGV[4]  page size

  Returns  {total, id, created, lastActivity, expires, metadata JSON, id, ...}: `total` live
           sessions; ids whose hash is gone are dropped from the index (and the page).
]]
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local offset = tonumber(ARGV[3])
local ids = redis.call('ZRANGE', KEYS[1], offset, offset + tonumber(ARGV[4]) - 1, 'REV')
local out = {0}
for _, id in ipairs(ids) do
  local h = redis.call('HMGET', ARGV[2] .. id, 'c', 'a', 'e', 'm')
  if h[1] then
    out[#out + 1] = id
    out[#out + 1] = h[1]
    out[#out + 1] = h[2]
    out[#out + 1] = h[3]
    out[#out + 1] = h[4]
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
out[1] = redis.call('ZCARD', KEYS[1])
return out
