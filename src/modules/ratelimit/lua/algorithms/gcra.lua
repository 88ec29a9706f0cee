--[[
  GCRA, the generic cell rate algorithm (code 'gcra'): one request per `interval` ms on average,
  up to `burst` back to back. State: one number, the theoretical arrival time (TAT) in ms; the key
  expires when the TAT is reached (an idle key). A request is allowed when the TAT it would leave
  is at most burst * interval ahead of now.
]]
if need.gcra then
  ALGOS.gcra = {
    load = function(key, now, interval, burst)
      local tat = tonumber(redis.call('GET', key) or '0')
      return { interval = interval, burst = burst, tau = interval * burst, tat = tat }
    end,
    decide = function(st, now, cost)
      local tat = max(st.tat, now)
      -- clamp: a TAT more than tau ahead was written by a replica whose clock is ahead of ours;
      -- treat the key as exactly full (never emptier, never penalised beyond a full burst).
      if tat - now > st.tau then tat = now + st.tau end
      local need = cost > 0 and cost or 1
      local new = tat + need * st.interval
      local allowed = new - now <= st.tau + EPS
      if allowed and cost > 0 then
        tat = new
        st.dirty = true
      end
      st.tat = tat
      st.ttl = ceil(tat - now) + 1
      local remaining = (st.tau - (tat - now)) / st.interval
      return allowed, st.burst, remaining, tat - now, new - st.tau - now
    end,
    save = function(key, st)
      redis.call('SET', key, string.format('%.17g', st.tat), 'PX', st.ttl)
    end,
  }
end
