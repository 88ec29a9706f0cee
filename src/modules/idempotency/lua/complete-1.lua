--[[
  Completes an idempotency key with the response to replay (write-once). The record is one
  string (see common.lua).

  KEYS[1]  the record: <tenant>:idem:<owner>:<key>
  ARGV[1]  now (Unix ms)
  ARGV[2]  the token returned by begin
  ARGV[3]  the response JSON

  Returns  1 completed; 2 already completed with this token (a retried PUT: nothing changed);
           0 no such record (never begun, released or expired); -1 the token does not hold it
           (wrong, taken over after the lock expired, or completed by another holder).
]]
-- @include
local rec = load(KEYS[1])
if not rec then return 0 end
if rec.t ~= ARGV[2] then return -1 end
if rec.st == 'c' then return 2 end
rec.st = 'c'
rec.r = ARGV[3]
rec.ca = ARGV[1]
rec.l = ''
redis.call('SET', KEYS[1], encode(rec), 'PX', rec.ttl)
return 1
