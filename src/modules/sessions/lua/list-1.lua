--[[
  One page of a user's live sessions, most recently active first (ties by id); prunes expired
  index entries. Reads every entry of the index (at most SESSION_MAX_PER_USER live ones, as
  revoke-all does): index scores trail activity (see common.lua), the sessions' expiries do not.

  KEYS[1]  the user's index: <tenant>:usess:<userId>
  ARGV[1]  now (Unix ms)
  ARGV[2]  prefix of the tenant's session keys (<tenant>:session:)
  ARGV[3]  offset (rank, 0-based)
  ARGV[4]  page size

  Returns  {total, id, created, lastActivity, expires, metadata JSON, id, ...}: `total` live
           sessions; ids whose hash is gone are dropped from the index (and the page).
]]
-- @include
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - INDEX_LAG_MAX))
local live = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local key = ARGV[2] .. id
  local h = redis.call('HMGET', key, 'c', 'i', 'x', 'a', 'm')
  if h[1] then
    local last, exp = times(key, h[2], h[3], h[4])
    live[#live + 1] = {id, h[1], last, exp, h[5], last}
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
table.sort(live, function(p, q)
  if p[6] ~= q[6] then return p[6] > q[6] end
  return p[1] < q[1]
end)
local out = {#live}
local offset = tonumber(ARGV[3])
for i = offset + 1, math.min(#live, offset + tonumber(ARGV[4])) do
  local s = live[i]
  for j = 1, 5 do out[#out + 1] = s[j] end
end
return out
