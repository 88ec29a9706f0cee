--[[
  GCRA, the generic cell rate algorithm (code 'gcra'): one request per `interval` ms on average,
  up to `burst` back to back. State: one number, the theoretical arrival time (TAT) in ms,
  followed by the lease generations (lent.lua) while units may be on lease; the key expires when
  the TAT is reached (an idle key) and nothing is on lease. A request is allowed when the TAT it
  would leave is at most burst * interval ahead of now.
  A lease takes up to half the room left; while on lease, units hold the TAT at least
  `lent * interval` ahead of now (the cap of a token bucket, lowered: lent.lua). Units of an ended
  lease that its replica did not give out move the TAT back (giveBack), while the lease's
  generation is live, by leaseMs / 2 at least (lent.lua, unlend).
  A refund (check-n.lua) moves the TAT back by what a check added, less what a state that never
  saw it may have lost since (a TAT behind a later check's now is lifted to it): at most the
  time since the check, on the newest clock that may have checked since. The state stores no
  time, so that clock is taken as the refund's plus REFUND_SKEW_MS (check-n.lua).
]]
if need.gcra then
  ALGOS.gcra = {
    load = function(key, now, interval, burst)
      local st = { origin = 0, interval = interval, burst = burst, tau = interval * burst, tat = 0,
        la = 0, lf = 0, pa = 0, pf = 0 }
      local v = redis.call('GET', key)
      if v then
        local sp = string.find(v, ' ', 1, true)
        if sp then
          st.tat = tonumber(string.sub(v, 1, sp - 1))
          loadLent(st, v, sp + 1)
        else
          st.tat = tonumber(v)
        end
      end
      return st
    end,
    decide = function(st, now, cost)
      local tat = max(st.tat, now + lent(st, now) * st.interval)
      -- clamp: a TAT more than tau ahead was written by a replica whose clock is ahead of ours;
      -- this check sees the key exactly full (never emptier, never penalised beyond a full
      -- burst), and is denied. The TAT itself stays: stored lowered (a give-back makes a denied
      -- check's state dirty), it would free room for the replica ahead that no use made.
      local seen = min(tat, now + st.tau)
      local need = cost > 0 and cost or 1
      local new = seen + need * st.interval
      local allowed = new - now <= st.tau + EPS
      if allowed and cost > 0 then
        tat = new
        seen = new
        st.dirty = true
        st.origin = now
      end
      st.tat = tat
      st.now = now
      local remaining = (st.tau - (seen - now)) / st.interval
      return allowed, st.burst, remaining, max(seen - now, lentHold(st, now)), new - st.tau - now
    end,
    lease = function(st, want, leaseMs)
      local room = (st.tau - (st.tat - st.now)) / st.interval
      local units = min(want, floor(room / 2 + EPS))
      if units < 1 then return 0, 0, 0 end
      lend(st, st.now, units, leaseMs)
      st.tat = st.tat + units * st.interval
      return units, leaseMs, units * st.interval, st.lf
    end,
    giveBack = function(st, units, gen, now, leaseMs)
      -- A GCRA state stores no clock, so a replica behind could take for live a generation that
      -- one ahead has seen forgotten (and used the room it freed): the generation must still be
      -- live leaseMs / 2 on, the most two replicas' clocks may disagree (lent.lua).
      local back = unlend(st, now + leaseMs / 2, units, gen)
      if back == 0 then return end
      -- decide holds the TAT at least the (now lower) lent units ahead of now
      st.tat = st.tat - back * st.interval
      st.dirty = true
    end,
    save = function(key, st)
      local ttl = ceil(max(st.tat - st.now, lentHold(st, st.now))) + 1
      redis.call('SET', key, string.format('%.17g', st.tat) .. lentSuffix(st, st.now), 'PX', ttl)
    end,
  }
  -- Built only for a call that refunds (a function costs an allocation per call).
  if need.refund then
    ALGOS.gcra.refund = function(st, units, at, now)
      local back = units * st.interval - (max(now, at) + REFUND_SKEW_MS - at)
      back = min(back, st.tat - now) -- a TAT behind now is an idle key: nothing to give back
      if back <= EPS then return end
      st.tat = st.tat - back
      st.now = now
      st.dirty = true
    end
  end
end
