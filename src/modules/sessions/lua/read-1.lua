--[[
  Reads a session (GET without touch): its hash, with its last activity and expiry derived from
  the key's expiry (see common.lua). Writes nothing.

  KEYS[1]  the session: <tenant>:session:<id>

  Returns  false when the session does not exist (unknown or expired), else the session as
           field, value, ..., its last activity and expiry last.
]]
-- @include
local h, _, idle, abs, _, stored_a = read_all(KEYS[1])
if not h then return false end
return with_times(h, times(KEYS[1], idle, abs, stored_a))
