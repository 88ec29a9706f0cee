--[[
  Purges a queue: drops every message (received or not) and every delayed message, and keeps
  the consumer groups (positioned at the end, with nothing in flight), the settings and the
  dead-letter queue. The stream is deleted (UNLINK frees it in the background) and recreated
  with its groups, so no pending entry is left pointing at a deleted message. The dedup epoch
  ends (publish-n.lua): dedup ids seen before the purge no longer count, so the same messages
  can be published again.

  KEYS[1]  the stream <tenant>:q:<name>
  KEYS[2]  its delayed set <tenant>:qdelay:<name>
  KEYS[3]  its settings <tenant>:qconf:<name>

  Returns  {existed, messages, delayed, groups}: existed 1 when either key did; the others count
           what was dropped (messages: stream entries, acknowledged history included) and the
           groups kept.
]]
local names = {}
local messages = 0
if redis.call('EXISTS', KEYS[1]) == 1 then
  messages = redis.call('XLEN', KEYS[1])
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
    for j = 1, #g, 2 do
      if g[j] == 'name' then names[#names + 1] = g[j + 1] end
    end
  end
end
local delayed = redis.call('ZCARD', KEYS[2])
local existed = redis.call('UNLINK', KEYS[1], KEYS[2])
if existed > 0 then redis.call('HDEL', KEYS[3], 'e') end
for _, name in ipairs(names) do
  redis.call('XGROUP', 'CREATE', KEYS[1], name, '$', 'MKSTREAM')
end
return {existed > 0 and 1 or 0, messages, delayed, #names}
