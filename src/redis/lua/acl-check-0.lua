--[[
  Asks Redis, for each command the gateway needs, whether the current user may run it
  (redis.acl_check_cmd, Redis 7.0 and later). Reads and writes nothing.

  ARGV     groups, one per command: the number of words n, then the command's n words (the
           command, its subcommand if any, and arguments naming sample keys and channels)

  Returns  the 1-based positions of the groups refused, negated for a command this Redis does not
           know; {0} when this Redis has no redis.acl_check_cmd.
]]
if not redis.acl_check_cmd then return {0} end
local refused = {}
local i, group = 1, 0
while i <= #ARGV do
  local n = tonumber(ARGV[i])
  group = group + 1
  local ok, allowed = pcall(redis.acl_check_cmd, unpack(ARGV, i + 1, i + n))
  if not ok then
    refused[#refused + 1] = -group
  elseif not allowed then
    refused[#refused + 1] = group
  end
  i = i + n + 1
end
return refused
