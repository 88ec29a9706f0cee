--[[
  Takes the stampede lease of a cache key unless someone holds it.

  KEYS[1]  the lease: <tenant>:lease:<key>
  ARGV[1]  the token to store (random, from the gateway)
  ARGV[2]  lease duration, ms

  Returns  {1, ARGV[2]} when this caller now holds the lease; {0, remaining ms} when another
           caller holds it (the lease expires on its own after its duration).
]]
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, tonumber(ARGV[2])}
end
return {0, redis.call('PTTL', KEYS[1])}
