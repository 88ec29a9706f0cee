--[[
  The benchmark baseline's token bucket: the textbook version (one string "tokens ts", refill,
  take, SET with PX), what a hand-written service would run.
  KEYS[1] bucket; ARGV[1] capacity, ARGV[2] refill per ms, ARGV[3] now ms, ARGV[4] cost
  Returns {allowed, remaining}
]]
local cap, rate, now, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local v = redis.call('GET', KEYS[1])
local tokens, ts = cap, now
if v then
  local sp = string.find(v, ' ', 1, true)
  tokens, ts = tonumber(string.sub(v, 1, sp - 1)), tonumber(string.sub(v, sp + 1))
end
tokens = math.min(cap, tokens + math.max(0, now - ts) * rate)
local allowed = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
  redis.call('SET', KEYS[1], string.format('%.17g %d', tokens, now), 'PX', math.ceil((cap - tokens) / rate) + 1)
end
return {allowed, math.floor(tokens)}
