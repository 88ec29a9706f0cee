--[[
  Reads a session and slides its idle expiry in one round trip (GET ?touch=true, _touch).

  KEYS[1]  the session: <tenant>:session:<id>
  ARGV[1]  now (Unix ms)
  ARGV[2]  prefix of the tenant's user indexes (<tenant>:usess:)
  ARGV[3]  the session id
  ARGV[4]  '1' to return every field, '0' for the user and timestamps only
  ARGV[5]  touch-after (ms): a touch less than this long after the recorded last activity
           writes nothing (0: every touch writes); never more than half the idle ttl, so a
           touched session always has at least half its idle ttl left

  Returns  false when the session does not exist (unknown or expired), else the session as
           field, value, ... as it is after the slide (or as it was, when the touch was
           throttled: the caller sees it from a last activity other than now), its last
           activity and expiry last (see common.lua). A slide mostly writes one command: the
           key's expiry, or once capped at the absolute expiry the `a` field.
]]
-- @include
local now = tonumber(ARGV[1])
local touch_after = tonumber(ARGV[5])

local h, user, idle, abs, score, stored_a, created
if ARGV[4] == '1' then
  h, user, idle, abs, score, stored_a = read_all(KEYS[1])
  if not h then return false end
else
  local m = redis.call('HMGET', KEYS[1], 'u', 'i', 'x', 'z', 'a', 'c')
  if not m[1] then return false end
  user, idle, abs, score, stored_a, created = m[1], m[2], m[3], m[4], m[5], m[6]
end
local last, exp = times(KEYS[1], idle, abs, stored_a)
-- A touch writes nothing when the last one was recent enough (never longer ago than half the
-- idle ttl).
if not (touch_after > 0 and now - last < math.min(touch_after, tonumber(idle) / 2)) then
  last, exp = slide(KEYS[1], ARGV[2], ARGV[3], now, user, idle, abs, score, exp)
end
if h then return with_times(h, last, exp) end
return {'u', user, 'c', created, 'x', abs, 'a', last, 'e', exp}
