--[[
  One receive for a consumer of a group: moves due delayed messages into the stream, redelivers
  messages whose visibility timeout passed (dead-lettering those received maxReceiveCount times
  already), then reads new ones, up to `max` in all. Every delivered message is hidden for the
  visibility timeout.

  Visibility is kept in the stream's own pending entries list: a delivered entry's idle time is
  set to (ceiling - visibility), so it becomes eligible again exactly when its idle time reaches
  the ceiling (XPENDING IDLE <ceiling>). Extending or nacking sets the idle time again.

  KEYS[1]  the stream <tenant>:q:<name>
  KEYS[2]  its delayed set <tenant>:qdelay:<name>
  KEYS[3]  its dead-letter stream <tenant>:q:<name>.dlq
  KEYS[4]  its settings <tenant>:qconf:<name> (r max receive count, l retention; both optional)
  ARGV[1]  now (Unix ms)
  ARGV[2]  group
  ARGV[3]  consumer
  ARGV[4]  most messages to deliver
  ARGV[5]  visibility timeout (ms)
  ARGV[6]  visibility ceiling (ms; the largest visibility timeout allowed)
  ARGV[7]  max receive count (default; the queue's `r` setting wins)
  ARGV[8]  retention length of the stream and the dead-letter stream (default; `l` wins)

  Returns  {'nogroup'} when the group (or the stream) does not exist; else
           {'ok', lastId, nextDueMs, deadLettered, id, data, enqueuedAt, receiveCount, ...}:
           lastId the newest entry of the stream ('0-0' when empty) and nextDueMs the due time
           of the next delayed message (-1 when none), both for a caller that waits for more.
]]
-- @include
local now = tonumber(ARGV[1])
local max = tonumber(ARGV[4])
local maxReceive = setting(KEYS[4], 'r', ARGV[7])
local maxlen = setting(KEYS[4], 'l', ARGV[8])
local ceiling = ARGV[6]
local hide = tonumber(ARGV[6]) - tonumber(ARGV[5])
local expired = redis.pcall('XPENDING', KEYS[1], ARGV[2], 'IDLE', ceiling, '-', '+', max)
if expired.err then return {'nogroup'} end

local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1000)
for _, m in ipairs(due) do
  local a = string.find(m, '|', 1, true)
  local b = string.find(m, '|', a + 1, true)
  redis.call('XADD', KEYS[1], '*', 'd', string.sub(m, b + 1), 't', string.sub(m, a + 1, b - 1))
  redis.call('ZREM', KEYS[2], m)
end

local out = {'ok', '0-0', -1, 0}
local dead = 0
local claim, counts = {}, {}
for _, e in ipairs(expired) do
  local id, count = e[1], e[4]
  if count >= maxReceive then
    local entry = redis.call('XRANGE', KEYS[1], id, id)[1]
    if entry then
      redis.call('XADD', KEYS[3], '*', 'd', field(entry[2], 'd'), 't', field(entry[2], 't'),
        'o', id, 'g', ARGV[2], 'c', count)
    end
    redis.call('XACK', KEYS[1], ARGV[2], id)
    dead = dead + 1
  else
    claim[#claim + 1] = id
    counts[id] = count + 1
  end
end
if dead > 0 then redis.call('XTRIM', KEYS[3], 'MAXLEN', '~', maxlen) end
if #claim > 0 then
  claim[#claim + 1] = 'IDLE'
  claim[#claim + 1] = hide
  local claimed = redis.call('XCLAIM', KEYS[1], ARGV[2], ARGV[3], ceiling, unpack(claim))
  for _, entry in ipairs(claimed) do
    if type(entry) == 'table' then
      out[#out + 1] = entry[1]
      out[#out + 1] = field(entry[2], 'd')
      out[#out + 1] = field(entry[2], 't')
      out[#out + 1] = counts[entry[1]]
    end
  end
end

local delivered = (#out - 4) / 4
if delivered < max then
  local r = redis.call('XREADGROUP', 'GROUP', ARGV[2], ARGV[3], 'COUNT', max - delivered,
    'STREAMS', KEYS[1], '>')
  if r then
    local ids = {}
    for _, entry in ipairs(r[1][2]) do
      out[#out + 1] = entry[1]
      out[#out + 1] = field(entry[2], 'd')
      out[#out + 1] = field(entry[2], 't')
      out[#out + 1] = 1
      ids[#ids + 1] = entry[1]
    end
    if #ids > 0 then
      ids[#ids + 1] = 'IDLE'
      ids[#ids + 1] = hide
      ids[#ids + 1] = 'JUSTID'
      redis.call('XCLAIM', KEYS[1], ARGV[2], ARGV[3], 0, unpack(ids))
    end
  end
  delivered = (#out - 4) / 4
end
if #due > 0 then trim(KEYS[1], maxlen) end
if delivered < max then
  local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
  if top then out[2] = top[1] end
  local nextDue = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')[2]
  if nextDue then out[3] = tonumber(nextDue) end
end
out[4] = dead
return out
