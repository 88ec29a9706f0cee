--[[
  Sliding window (code 'swin'): the two-counter approximation (as Cloudflare and envoy's
  ratelimit describe it): the previous fixed window's count, weighted by how much of it still
  overlaps the sliding window, plus the current window's count must stay within `limit`.
  O(1) memory: one string "<window index> <current count> <previous count>", expiring when both
  windows have passed.
  A lease takes up to half the room left, counted in the current window at once, and ends with
  that window: the weighted count only falls while the window lasts, so each leased unit would
  still be allowed when it is used, and later windows count it as used, unless the replica gives
  back what it did not give out (giveBack): uncounted from the window that counted it, current
  or previous.
  A refund (check-n.lua) uncounts what a check consumed from the window that counted it, current
  or previous, likewise.
]]
if need.swin then
  ALGOS.swin = {
    load = function(key, now, limit, window)
      local st = { origin = 0, limit = limit, window = window, idx = floor(now / window),
        cur = 0, prev = 0 }
      local v = redis.call('GET', key)
      if v then
        local a, b, c = string.match(v, '^(%d+) ([%d.]+) ([%d.]+)$')
        st.idx, st.cur, st.prev = tonumber(a), tonumber(b), tonumber(c)
      else
        st.absent = true
      end
      return st
    end,
    decide = function(st, now, cost)
      local w = st.window
      local idx = floor(now / w)
      if idx < st.idx then
        -- clamp: a clock behind the window already stored stays at that window's start
        idx = st.idx
        now = idx * w
      end
      if idx == st.idx + 1 then
        st.prev, st.cur = st.cur, 0
      elseif idx > st.idx + 1 then
        st.prev, st.cur = 0, 0
      end
      st.idx = idx
      local elapsed = now - idx * w
      local weight = (w - elapsed) / w
      local need = cost > 0 and cost or 1
      local allowed = st.prev * weight + st.cur + need <= st.limit + EPS
      if allowed and cost > 0 then
        st.cur = st.cur + cost
        st.dirty = true
        st.origin = idx
      end
      st.ttl = 2 * w - elapsed + 1
      st.weighted, st.windowLeft = st.prev * weight, w - elapsed
      local remaining = st.limit - (st.prev * weight + st.cur)
      local reset = 0
      if st.cur > 0 then reset = 2 * w - elapsed elseif st.prev > 0 then reset = w - elapsed end
      local retry = 0
      if not allowed then
        if st.cur + need > st.limit then
          -- wait for the next window, then until the current count's weight has shrunk enough
          retry = (w - elapsed) + max(0, w * (1 - (st.limit - need) / st.cur))
        else
          retry = w * (1 - (st.limit - st.cur - need) / st.prev) - elapsed
        end
      end
      return allowed, st.limit, remaining, reset, retry
    end,
    lease = function(st, want, leaseMs)
      -- a lease cut short by the window's end is asked for in proportion, rounded up: rounded
      -- down, a lease of 1 would come to none, and a window no longer than leaseMs never lease
      local ttl = min(leaseMs, st.windowLeft)
      local units = min(ceil(want * ttl / leaseMs), floor((st.limit - st.weighted - st.cur) / 2 + EPS))
      if units < 1 then return 0, 0, 0 end
      st.cur = st.cur + units
      return units, ttl, 0, st.idx
    end,
    giveBack = function(st, units, idx)
      -- an absent state (reset, or expired) counts nothing to give back from
      if st.absent then return end
      if st.idx == idx then
        st.cur = max(0, st.cur - units)
      elseif st.idx == idx + 1 then
        st.prev = max(0, st.prev - units)
      else
        return
      end
      st.dirty = true
    end,
    save = function(key, st)
      redis.call('SET', key, string.format('%d %d %d', st.idx, st.cur, st.prev), 'PX', st.ttl)
    end,
  }
  -- Built only for a call that refunds (a function costs an allocation per call).
  if need.refund then
    -- A give-back, with the expiry a state that decided nothing in this call needs.
    ALGOS.swin.refund = function(st, units, idx, now)
      local ttl = (st.idx + 2) * st.window - now + 1
      if ttl <= 1 then return end
      st.ttl = ttl
      ALGOS.swin.giveBack(st, units, idx)
    end
  end
end
