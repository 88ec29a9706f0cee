--[[
  Token bucket (code 'tb'): up to `capacity` tokens, refilled continuously at `refill` tokens per
  ms; a request takes `cost` tokens. State: one string "<tokens> <last ms>", followed by the lease
  generations (lent.lua) while tokens may be on lease. A missing key is a full bucket; the key
  expires when the bucket would be full again and nothing is on lease.
  A lease takes up to half the tokens left; while on lease they lower the cap (lent.lua). Units of
  an ended lease that its replica did not give out come back as tokens (giveBack), while the
  lease's generation is live (lent.lua, unlend).
  A refund (check-n.lua) puts back the tokens a check took, less what a bucket that never saw
  the check may have lost to its cap since: at most the refill over the bucket's time since the
  check (its stored time covers the clocks of every replica that consumed since). So the bucket
  never holds more than one that never saw the check.
]]
if need.tb then
  ALGOS.tb = {
    load = function(key, now, capacity, refill)
      local st = { origin = 0, capacity = capacity, refill = refill, tokens = capacity, ts = now,
        la = 0, lf = 0, pa = 0, pf = 0 }
      local v = redis.call('GET', key)
      if v then
        local sp = string.find(v, ' ', 1, true)
        local sp2 = string.find(v, ' ', sp + 1, true)
        st.tokens = tonumber(string.sub(v, 1, sp - 1))
        if sp2 then
          st.ts = tonumber(string.sub(v, sp + 1, sp2 - 1))
          loadLent(st, v, sp2 + 1)
        else
          st.ts = tonumber(string.sub(v, sp + 1))
        end
      end
      return st
    end,
    decide = function(st, now, cost)
      local t = max(now, st.ts) -- clamp: a clock behind the stored one sees no refill
      local tokens, ts = st.tokens, st.ts
      local cap = st.capacity - lent(st, t)
      st.tokens = min(cap, st.tokens + (t - st.ts) * st.refill)
      st.ts = t
      local need = cost > 0 and cost or 1
      local allowed = need <= st.tokens + EPS
      local left = st.tokens
      if allowed and cost > 0 then
        st.tokens = max(0, st.tokens - cost)
        left = st.tokens
        st.dirty = true
        st.origin = t
      elseif st.gave then
        -- Only a give-back changed the state: it is stored as of the time it had (the tokens
        -- back, no refill), so that a check that consumed nothing moves the bucket's clock on
        -- for no replica. A later check at a clock behind this one's refills no more than the
        -- checks that consumed allow.
        st.tokens, st.ts = tokens, ts
      end
      local reset = max((st.capacity - left) / st.refill, lentHold(st, t))
      return allowed, st.capacity, left, reset, (need - left) / st.refill
    end,
    lease = function(st, want, leaseMs)
      local units = min(want, floor(st.tokens / 2 + EPS))
      if units < 1 then return 0, 0, 0 end
      lend(st, st.ts, units, leaseMs)
      st.tokens = st.tokens - units
      return units, leaseMs, units / st.refill, st.lf
    end,
    giveBack = function(st, units, gen, now)
      -- Live at the newest time the bucket has stored (a replica behind sees no generation live
      -- that one ahead has seen forgotten).
      local back = unlend(st, max(now, st.ts), units, gen)
      if back == 0 then return end
      -- the cap rose by as much (decide refills and caps it next)
      st.tokens = st.tokens + back
      st.dirty = true
      st.gave = true
    end,
    save = function(key, st)
      local ttl = ceil((st.capacity - st.tokens) / st.refill + lentHold(st, st.ts)) + 1
      redis.call('SET', key, string.format('%.17g %d', st.tokens, st.ts) .. lentSuffix(st, st.ts),
        'PX', ttl)
    end,
  }
  -- Built only for a call that refunds (a function costs an allocation per call).
  if need.refund then
    ALGOS.tb.refund = function(st, units, at, now)
      local cap = st.capacity - lent(st, st.ts)
      local back = min(units - max(0, max(now, st.ts) - at) * st.refill, cap - st.tokens)
      if back <= EPS then return end
      -- stored as of the bucket's own time, like a give-back (no refill to this clock)
      st.tokens = st.tokens + back
      st.dirty = true
    end
  end
end
