--[[
  Deletes every session of a user, or all but one (DELETE /v1/users/{id}/sessions?except=).

  KEYS[1]  the user's index: <tenant>:usess:<userId>
  ARGV[1]  now (Unix ms)
  ARGV[2]  prefix of the tenant's session keys (<tenant>:session:)
  ARGV[3]  the id to keep, or ''

  Returns  the number of live sessions deleted. The index holds at most SESSION_MAX_PER_USER
           ids (plus expired ones, pruned first), so the work is bounded.
]]
-- @include
prune_index(KEYS[1], ARGV[2], tonumber(ARGV[1]))
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
local n = 0
for _, id in ipairs(ids) do
  if id ~= ARGV[3] then
    n = n + redis.call('UNLINK', ARGV[2] .. id)
    redis.call('ZREM', KEYS[1], id)
  end
end
return n
