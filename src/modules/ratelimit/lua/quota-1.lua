--[[
  Adds a gateway replica's locally counted requests of one API key to the shared count of the
  current quota window (the gateway's own protection, see modules/ratelimit/quota.ts).

  KEYS[1]  _gw:quota:<key id>:<window start ms>
  ARGV[1]  requests counted locally since the last flush (>= 0)
  ARGV[2]  ms until the window ends (+ margin): the key's expiry, set when it is created

  Returns  the window's total so far, across every replica.
]]
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if n == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return n
