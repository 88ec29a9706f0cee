--[[
  Fixed window (code 'fwin'): at most `limit` units per window of `window` ms. Windows are
  aligned to the epoch (calendar: UTC minute, hour or day boundaries when the window divides a
  day), or start at the first request after the previous window ended. State: one string
  "<window start ms> <count>", expiring at the window's end. (INCR + PEXPIRE would use the Redis
  server's clock for the boundary; time is an argument here, so the window start is stored.)
  A lease takes up to half the units left in the window, counted at once, and ends with the
  window: every leased unit is used in the window that counted it. Units of a lease that ended
  before its window, not given out, are uncounted when the replica says so (giveBack), if the
  window that counted them (its start) is still the one stored.
  A refund (check-n.lua) uncounts what a check consumed, likewise only in the window that
  counted it (counts are sums: that is exactly the window that never saw the check). A window
  left with nothing counted (by a refund or a give-back) is deleted: it may have started with
  what was uncounted, and a window that never saw that starts with the next check.
]]
if need.fwin then
  ALGOS.fwin = {
    load = function(key, now, limit, window, calendar)
      local st = { origin = 0, limit = limit, window = window, calendar = calendar == '1',
        start = -1, count = 0 }
      local v = redis.call('GET', key)
      if v then
        local sp = string.find(v, ' ', 1, true)
        st.start = tonumber(string.sub(v, 1, sp - 1))
        st.count = tonumber(string.sub(v, sp + 1))
      end
      return st
    end,
    decide = function(st, now, cost)
      local w = st.window
      -- clamp: a clock behind the stored window start is inside that window
      if now < st.start then now = st.start end
      if st.start < 0 or now >= st.start + w then
        st.start = st.calendar and (now - now % w) or now
        st.count = 0
      end
      local need = cost > 0 and cost or 1
      local allowed = st.count + need <= st.limit
      if allowed and cost > 0 then
        st.count = st.count + cost
        st.dirty = true
        st.origin = st.start
      end
      local reset = st.count > 0 and (st.start + w - now) or 0
      st.ttl = st.start + w - now + 1
      return allowed, st.limit, st.limit - st.count, reset, st.start + w - now
    end,
    lease = function(st, want, leaseMs)
      -- a lease cut short by the window's end is asked for in proportion, rounded up: rounded
      -- down, a lease of 1 would come to none, and a window no longer than leaseMs never lease
      local ttl = min(leaseMs, st.ttl - 1)
      local units = min(ceil(want * ttl / leaseMs), floor((st.limit - st.count) / 2))
      if units < 1 then return 0, 0, 0 end
      st.count = st.count + units
      return units, ttl, 0, st.start
    end,
    giveBack = function(st, units, start)
      if st.start ~= start then return end
      st.count = max(0, st.count - units)
      st.dirty = true
    end,
    save = function(key, st)
      if st.count == 0 then
        redis.call('DEL', key)
        return
      end
      redis.call('SET', key, string.format('%d %d', st.start, st.count), 'PX', st.ttl)
    end,
  }
  -- Built only for a call that refunds (a function costs an allocation per call).
  if need.refund then
    -- A give-back, with the expiry a state that decided nothing in this call needs.
    ALGOS.fwin.refund = function(st, units, start, now)
      local ttl = st.start + st.window - now + 1
      if st.count == 0 or ttl <= 1 then return end
      st.ttl = ttl
      ALGOS.fwin.giveBack(st, units, start)
    end
  end
end
