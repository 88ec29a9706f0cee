--[[
  Begins a request under an idempotency key (the IETF Idempotency-Key draft, Stripe-style).
  The record is a hash: st state ('started' | 'completed'), t the token of the holder, f the
  request fingerprint ('' when none was given), l lock expiry (Unix ms), c created (Unix ms),
  ttl record ttl (ms), r the stored response JSON (once completed).

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
local now = tonumber(ARGV[1])
local h = redis.call('HMGET', KEYS[1], 'st', 'f', 'l', 'r')
if not h[1] then
  local lock = now + tonumber(ARGV[4])
  redis.call('HSET', KEYS[1], 'st', 'started', 't', ARGV[2], 'f', ARGV[3], 'l', lock, 'c', now,
    'ttl', ARGV[5])
  redis.call('PEXPIRE', KEYS[1], math.max(tonumber(ARGV[5]), tonumber(ARGV[4])))
  return {'started', ARGV[2], tostring(lock)}
end
if h[2] ~= ARGV[3] then return {'mismatch'} end
if h[1] == 'completed' then return {'completed', h[4]} end
if now < tonumber(h[3]) then return {'in_progress', h[3]} end
local lock = now + tonumber(ARGV[4])
redis.call('HSET', KEYS[1], 't', ARGV[2], 'l', lock)
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[4]) then
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))
end
return {'taken_over', ARGV[2], tostring(lock)}
