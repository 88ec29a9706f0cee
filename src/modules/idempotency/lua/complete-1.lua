--[[
  Completes an idempotency key with the response to replay (write-once).

  KEYS[1]  the record: <tenant>:idem:<owner>:<key>
  ARGV[1]  now (Unix ms)
  ARGV[2]  the token returned by begin
  ARGV[3]  the response JSON

  Returns  1 completed; 2 already completed with this token (a retried PUT: nothing changed);
           0 no such record (never begun, released or expired); -1 the token does not hold it
           (wrong, taken over after the lock expired, or completed by another holder).
]]
local h = redis.call('HMGET', KEYS[1], 'st', 't', 'ttl')
if not h[1] then return 0 end
if h[2] ~= ARGV[2] then return -1 end
if h[1] == 'completed' then return 2 end
redis.call('HSET', KEYS[1], 'st', 'completed', 'r', ARGV[3], 'ca', ARGV[1])
redis.call('HDEL', KEYS[1], 'l')
redis.call('PEXPIRE', KEYS[1], h[3])
return 1
