--[[
  Publishes one or more messages: each is appended to the stream, or scheduled in the delayed set
  when it has a delay; a message with a dedup id already seen within the dedup window is not
  added again and answers with the first publish's id.

  KEYS[1..n]  1: the stream <tenant>:q:<name>; 2: its delayed set <tenant>:qdelay:<name>;
              3: its settings <tenant>:qconf:<name>; 4..n: the dedup keys
              <tenant>:qdedup:<name>:<dedupId> of the messages that have one
  ARGV[1]  now (Unix ms)
  ARGV[2]  retention: the stream length above which acknowledged history is trimmed (the
           queue's own `l` setting wins)
  ARGV[3]  dedup window (ms)
  ARGV[4]  number of messages m, then 4 arguments per message:
           the message's JSON, delay (ms, 0 none), the KEYS index of its dedup key (0 none),
           a random token (the delayed set member's unique part)

  Returns  {id, duplicate, id, duplicate, ...} in order: the stream id (or 'scheduled:<token>'
           for a delayed message) and '1' when the dedup id had been seen ('0' otherwise).
]]
-- @include
local now = tonumber(ARGV[1])
local out = {}
local added = false
for i = 0, tonumber(ARGV[4]) - 1 do
  local at = 5 + i * 4
  local data, delay, dk, token = ARGV[at], tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2]), ARGV[at + 3]
  local id, dup = nil, '0'
  if dk > 0 then
    id = redis.call('GET', KEYS[dk])
    if id then dup = '1' end
  end
  if not id then
    if delay > 0 then
      id = 'scheduled:' .. token
      redis.call('ZADD', KEYS[2], now + delay, token .. '|' .. ARGV[1] .. '|' .. data)
    else
      id = redis.call('XADD', KEYS[1], '*', 'd', data, 't', ARGV[1])
      added = true
    end
    if dk > 0 then redis.call('SET', KEYS[dk], id, 'PX', ARGV[3]) end
  end
  out[#out + 1] = id
  out[#out + 1] = dup
end
if added then trim(KEYS[1], setting(KEYS[3], 'l', ARGV[2])) end
return out
