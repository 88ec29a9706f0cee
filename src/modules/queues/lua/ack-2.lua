--[[
  Acknowledges messages for a group (they are never delivered to it again) and trims the
  history every group has acknowledged once the stream is over its retention length.

  KEYS[1]  the stream <tenant>:q:<name>
  KEYS[2]  its settings <tenant>:qconf:<name>
  ARGV[1]  group
  ARGV[2]  retention length (default; the queue's `l` setting wins)
  ARGV[3..] ids

  Returns  the number of messages acknowledged now (ids not pending are not counted).
]]
-- @include
local ids = {}
for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
local n = redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
if n > 0 then trim(KEYS[1], setting(KEYS[2], 'l', ARGV[2])) end
return n
