--[[
  Merges top-level data fields into a session (PATCH): a field set to a JSON value replaces
  that field, a field sent as '' (JSON null in the request) is deleted. The size cap is checked
  against the merged result before anything is written.

  KEYS[1]  the session: <tenant>:session:<id>
  ARGV[1]  now (Unix ms)
  ARGV[2]  prefix of the tenant's user indexes (<tenant>:usess:)
  ARGV[3]  the session id
  ARGV[4]  most data bytes (field names plus JSON values)
  ARGV[5]  '1' to also slide the idle expiry
  ARGV[6..] field name, JSON text or '' (delete), ...

  Returns  {0} no such session; {-1, bytes} the merged data would be `bytes` long (over the
           cap; nothing changed); {1, {field, value, ...}} the whole session after the merge, its last
           activity and expiry last (see common.lua).
]]
-- @include
local cur = redis.call('HMGET', KEYS[1], 'u', 'i', 'x', 's', 'z', 'a')
if not cur[1] then return {0} end
local size = tonumber(cur[4] or '0')
for i = 6, #ARGV, 2 do
  local name, value = ARGV[i], ARGV[i + 1]
  local old = redis.call('HSTRLEN', KEYS[1], 'd:' .. name)
  if old > 0 then size = size - #name - old end
  if value ~= '' then size = size + #name + #value end
end
if size > tonumber(ARGV[4]) then return {-1, size} end

local sets, dels = {'s', size}, {}
for i = 6, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    dels[#dels + 1] = 'd:' .. ARGV[i]
  else
    sets[#sets + 1] = 'd:' .. ARGV[i]
    sets[#sets + 1] = ARGV[i + 1]
  end
end
for i = 1, #dels, 1000 do
  redis.call('HDEL', KEYS[1], unpack(dels, i, math.min(i + 999, #dels)))
end
hset_all(KEYS[1], sets)
local last, exp = times(KEYS[1], cur[2], cur[3], cur[6])
if ARGV[5] == '1' then
  last, exp = slide(KEYS[1], ARGV[2], ARGV[3], tonumber(ARGV[1]), cur[1], cur[2], cur[3], cur[5], exp)
end
return {1, with_times(redis.call('HGETALL', KEYS[1]), last, exp)}
