--[[
  Publishes one or more messages: each is appended to the stream, or scheduled in the delayed set
  when it has a delay; a message with a dedup id already seen within the dedup window is not
  added again and answers with the first publish's id. A delayed message on a queue that has no
  stream yet creates it empty (an entry trimmed at once), so the queue is listed from its first
  publish and not only once a message becomes receivable.

  Dedup ids count within the queue's dedup epoch, the settings field e: a purge drops the field
  and a delete drops the settings, so an id seen before either no longer counts, and the next
  publish with a dedup id starts a new epoch (ARGV[4]). Each dedup key holds '<epoch> <id>'; one
  that holds a bare id was written before epochs existed and counts in any epoch.

  KEYS[1..n]  1: the stream <tenant>:q:<name>; 2: its delayed set <tenant>:qdelay:<name>;
              3: its settings <tenant>:qconf:<name>; 4..n: the dedup keys
              <tenant>:qdedup:<name>:<dedupId> of the messages that have one
  ARGV[1]  now (Unix ms)
  ARGV[2]  retention: the stream length above which acknowledged history is trimmed (the
           queue's own `l` setting wins)
  ARGV[3]  dedup window (ms)
  ARGV[4]  a random token: the new epoch, if this publish has to start one
  ARGV[5]  number of messages m, then 4 arguments per message:
           the message's JSON, delay (ms, 0 none), the KEYS index of its dedup key (0 none),
           a random token (the delayed set member's unique part)

  Returns  {id, duplicate, id, duplicate, ...} in order: the stream id (or 'scheduled:<token>'
           for a delayed message) and '1' when the dedup id had been seen ('0' otherwise).
]]
-- @include
local now = tonumber(ARGV[1])
local out = {}
local added = false
local has_stream = false
local epoch
local function current_epoch()
  if epoch == nil then
    epoch = redis.call('HGET', KEYS[3], 'e')
    if not epoch then
      epoch = ARGV[4]
      redis.call('HSET', KEYS[3], 'e', epoch)
    end
  end
  return epoch
end
for i = 0, tonumber(ARGV[5]) - 1 do
  local at = 6 + i * 4
  local data, delay, dk, token = ARGV[at], tonumber(ARGV[at + 1]), tonumber(ARGV[at + 2]), ARGV[at + 3]
  local id, dup = nil, '0'
  if dk > 0 then
    local seen = redis.call('GET', KEYS[dk])
    if seen then
      local e, first = string.match(seen, '^(%S+) (.+)$')
      if e == nil then
        id = seen
      elseif e == current_epoch() then
        id = first
      end
      if id then dup = '1' end
    end
  end
  if not id then
    if delay > 0 then
      id = 'scheduled:' .. token
      redis.call('ZADD', KEYS[2], now + delay, token .. '|' .. ARGV[1] .. '|' .. data)
      if not has_stream then
        has_stream = true
        if redis.call('EXISTS', KEYS[1]) == 0 then
          redis.call('XADD', KEYS[1], 'MAXLEN', '0', '*', 'd', 'null', 't', ARGV[1])
        end
      end
    else
      id = redis.call('XADD', KEYS[1], '*', 'd', data, 't', ARGV[1])
      added = true
    end
    if dk > 0 then redis.call('SET', KEYS[dk], current_epoch() .. ' ' .. id, 'PX', ARGV[3]) end
  end
  out[#out + 1] = id
  out[#out + 1] = dup
end
if added then trim(KEYS[1], setting(KEYS[3], 'l', ARGV[2])) end
return out
