--[[
  Token bucket (code 'tb'): up to `capacity` tokens, refilled continuously at `refill` tokens per
  ms; a request takes `cost` tokens. State: one string "<tokens> <last ms>". A missing key is a
  full bucket; the key expires when the bucket would be full again.
]]
if need.tb then
  ALGOS.tb = {
    load = function(key, now, capacity, refill)
      local st = { capacity = capacity, refill = refill, tokens = capacity, ts = now }
      local v = redis.call('GET', key)
      if v then
        local sp = string.find(v, ' ', 1, true)
        st.tokens = tonumber(string.sub(v, 1, sp - 1))
        st.ts = tonumber(string.sub(v, sp + 1))
      end
      return st
    end,
    decide = function(st, now, cost)
      local t = max(now, st.ts) -- clamp: a clock behind the stored one sees no refill
      st.tokens = min(st.capacity, st.tokens + (t - st.ts) * st.refill)
      st.ts = t
      local need = cost > 0 and cost or 1
      local allowed = need <= st.tokens + EPS
      if allowed and cost > 0 then
        st.tokens = max(0, st.tokens - cost)
        st.dirty = true
      end
      local reset = (st.capacity - st.tokens) / st.refill
      return allowed, st.capacity, st.tokens, reset, (need - st.tokens) / st.refill
    end,
    save = function(key, st)
      local ttl = ceil((st.capacity - st.tokens) / st.refill) + 1
      redis.call('SET', key, string.format('%.17g %d', st.tokens, st.ts), 'PX', ttl)
    end,
  }
end
