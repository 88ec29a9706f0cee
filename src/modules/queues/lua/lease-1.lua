--[[
  Sets when in-flight messages become visible again (nack: now or after a delay; extend: after a
  new visibility timeout), for the ids the consumer still holds. An id redelivered to another
  consumer meanwhile, acknowledged, or unknown is left alone and not counted.

  KEYS[1]  the stream <tenant>:q:<name>
  ARGV[1]  group
  ARGV[2]  consumer
  ARGV[3]  idle time to set (ms): visibility ceiling minus the time until visible again
  ARGV[4..] ids

  Returns  the number of messages changed, or -1 when the group does not exist.
]]
local held = {}
for i = 4, #ARGV do
  local p = redis.pcall('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if p.err then return -1 end
  if p[1] then held[#held + 1] = ARGV[i] end
end
if #held == 0 then return 0 end
local n = #held
held[#held + 1] = 'IDLE'
held[#held + 1] = ARGV[3]
held[#held + 1] = 'JUSTID'
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, unpack(held))
return n
