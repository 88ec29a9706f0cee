--[[
  Begins a request under an idempotency key (the IETF Idempotency-Key draft, Stripe-style).
  The record is one string (see common.lua).

  KEYS[1]  the record: <tenant>:idem:<owner>:<key>
  ARGV[1]  now (Unix ms)
  ARGV[2]  a new token for the caller
  ARGV[3]  the fingerprint, or ''
  ARGV[4]  lock ttl (ms): how long the caller may take before another caller can take over
  ARGV[5]  record ttl (ms), counted from now and again from completion

  Returns  {'started', token, lockExpiresAt}: the caller holds the key (new, or taken over from
           a holder whose lock expired: 'taken_over' instead of 'started');
           {'completed', response JSON}: replay;
           {'in_progress', lockExpiresAt}: another caller holds it;
           {'mismatch'}: the key was begun with another fingerprint.
]]
-- @include
local now = tonumber(ARGV[1])
local lock_ms = tonumber(ARGV[4])
local rec = load(KEYS[1])
if not rec then
  local lock = now + lock_ms
  rec = {st = 's', t = ARGV[2], f = ARGV[3], l = lock, c = now, ttl = ARGV[5], ca = '', r = ''}
  redis.call('SET', KEYS[1], encode(rec), 'PX', math.max(tonumber(ARGV[5]), lock_ms))
  return {'started', ARGV[2], tostring(lock)}
end
if rec.f ~= ARGV[3] then return {'mismatch'} end
if rec.st == 'c' then return {'completed', rec.r} end
if now < tonumber(rec.l) then return {'in_progress', rec.l} end
local lock = now + lock_ms
rec.t = ARGV[2]
rec.l = lock
if redis.call('PTTL', KEYS[1]) < lock_ms then
  redis.call('SET', KEYS[1], encode(rec), 'PX', lock_ms)
else
  redis.call('SET', KEYS[1], encode(rec), 'KEEPTTL')
end
return {'taken_over', ARGV[2], tostring(lock)}
