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

  Returns  false when the session does not exist (unknown or expired), else the hash as
           field, value, ... as it is after the slide (or as it was, when the touch was
           throttled: the caller sees it from a last activity other than now).
]]
-- @include
local now = tonumber(ARGV[1])
local touch_after = tonumber(ARGV[5])

-- True when the touch should write nothing: the last write was recent enough.
local function throttled(last, idle)
  return touch_after > 0 and now - tonumber(last) < math.min(touch_after, tonumber(idle) / 2)
end

if ARGV[4] == '1' then
  local h = redis.call('HGETALL', KEYS[1])
  if #h == 0 then return false end
  local user, idle, abs, score, ai, ei
  for j = 1, #h, 2 do
    local f = h[j]
    if f == 'u' then user = h[j + 1]
    elseif f == 'i' then idle = h[j + 1]
    elseif f == 'x' then abs = h[j + 1]
    elseif f == 'z' then score = h[j + 1]
    elseif f == 'a' then ai = j + 1
    elseif f == 'e' then ei = j + 1
    end
  end
  if throttled(h[ai], idle) then return h end
  local exp = slide(KEYS[1], ARGV[2], ARGV[3], now, user, idle, abs, score)
  h[ai] = ARGV[1]
  h[ei] = tostring(exp)
  return h
end
local h = redis.call('HMGET', KEYS[1], 'u', 'i', 'x', 'c', 'z', 'a', 'e')
if not h[1] then return false end
if throttled(h[6], h[2]) then
  return {'u', h[1], 'c', h[4], 'a', h[6], 'e', h[7], 'x', h[3]}
end
local exp = slide(KEYS[1], ARGV[2], ARGV[3], now, h[1], h[2], h[3], h[5])
return {'u', h[1], 'c', h[4], 'a', ARGV[1], 'e', tostring(exp), 'x', h[3]}
