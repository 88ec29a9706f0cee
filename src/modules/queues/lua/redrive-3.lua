--[[
  Moves dead-lettered messages back into their queue (as new entries, receive count reset).

  KEYS[1]  the dead-letter stream <tenant>:q:<name>.dlq
  KEYS[2]  the stream <tenant>:q:<name>
  KEYS[3]  its settings <tenant>:qconf:<name>
  ARGV[1]  retention length of the stream (default; the queue's `l` setting wins)
  ARGV[2]  most messages to move when no ids are given (the oldest first)
  ARGV[3..] dead-letter entry ids to move (none: the oldest ARGV[2])

  Returns  {moved, remaining}: messages moved, entries left in the dead-letter stream.
]]
-- @include
local entries = {}
if #ARGV >= 3 then
  for i = 3, #ARGV do
    local e = redis.call('XRANGE', KEYS[1], ARGV[i], ARGV[i])[1]
    if e then entries[#entries + 1] = e end
  end
else
  entries = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', ARGV[2])
end
for _, e in ipairs(entries) do
  redis.call('XADD', KEYS[2], '*', 'd', field(e[2], 'd'), 't', field(e[2], 't'))
  redis.call('XDEL', KEYS[1], e[1])
end
if #entries > 0 then trim(KEYS[2], setting(KEYS[3], 'l', ARGV[1])) end
return {#entries, redis.call('XLEN', KEYS[1])}
