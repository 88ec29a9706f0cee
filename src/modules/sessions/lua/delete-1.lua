--[[
  Deletes a session and its entry in the user's index.

  KEYS[1]  the session: <tenant>:session:<id>
  ARGV[1]  prefix of the tenant's user indexes (<tenant>:usess:)
  ARGV[2]  the session id

  Returns  1 deleted, 0 no such session.
]]
local user = redis.call('HGET', KEYS[1], 'u')
if not user then return 0 end
redis.call('UNLINK', KEYS[1])
redis.call('ZREM', ARGV[1] .. user, ARGV[2])
return 1
