--[[
  Deletes a queue: its stream (messages, consumer groups, in-flight leases), its delayed
  messages and its settings, with its dead-letter queue's. UNLINK frees a large stream in the
  background, so Redis is not blocked while millions of entries are released.

  KEYS[1]  the stream <tenant>:q:<name>
  KEYS[2]  its delayed set <tenant>:qdelay:<name>
  KEYS[3]  its settings <tenant>:qconf:<name>
  KEYS[4]  its dead-letter stream <tenant>:q:<name>.dlq
  KEYS[5]  the dead-letter queue's delayed set <tenant>:qdelay:<name>.dlq
  KEYS[6]  the dead-letter queue's settings <tenant>:qconf:<name>.dlq

  Returns  {existed, messages, delayed, groups, deadLettered}: existed 1 when any of the keys
           did; the others count what was deleted (deadLettered: the dead-letter stream's
           entries and delayed messages).
]]
local function xlen(key)
  if redis.call('EXISTS', key) == 0 then return 0 end
  return redis.call('XLEN', key)
end

local messages = xlen(KEYS[1])
local groups = 0
if redis.call('EXISTS', KEYS[1]) == 1 then groups = #redis.call('XINFO', 'GROUPS', KEYS[1]) end
local delayed = redis.call('ZCARD', KEYS[2])
local dead = xlen(KEYS[4]) + redis.call('ZCARD', KEYS[5])
local existed = redis.call('UNLINK', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
return {existed > 0 and 1 or 0, messages, delayed, groups, dead}
