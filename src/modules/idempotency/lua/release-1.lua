--[[
  Releases an idempotency key after a failed attempt, so that a retry can begin again.

  KEYS[1]  the record: <tenant>:idem:<owner>:<key>
  ARGV[1]  the token returned by begin

  Returns  1 released (the record is gone); 0 no such record; -1 the token does not hold it;
           -2 it is completed (a completed key is never released: its response is replayed).
]]
-- @include
local rec = load(KEYS[1])
if not rec then return 0 end
if rec.t ~= ARGV[1] then return -1 end
if rec.st == 'c' then return -2 end
redis.call('UNLINK', KEYS[1])
return 1
