--[[
  Sliding log (code 'slog'): exact; at most `limit` units in any `window` ms. State: a sorted set,
  one member per unit consumed, scored by its time (members "<ms>-<n>", unique). The gateway caps
  `limit` (so the set's size) when it validates a policy. Entries older than the window are
  removed on write; the key expires one window after its newest entry.
]]
if need.slog then
  ALGOS.slog = {
    load = function(key, now, limit, window)
      local st = { key = key, limit = limit, window = window, pending = 0 }
      local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
      st.newest = tonumber(newest[2] or '0')
      -- clamp: never look at the log from before its newest entry
      st.now = max(now, st.newest)
      st.live = redis.call('ZCOUNT', key, '(' .. (st.now - window), '+inf')
      return st
    end,
    decide = function(st, _, cost)
      local need = cost > 0 and cost or 1
      local used = st.live + st.pending
      local allowed = used + need <= st.limit
      if allowed and cost > 0 then
        st.pending = st.pending + cost
        used = used + cost
        st.dirty = true
      end
      local reset = 0
      if st.pending > 0 then
        reset = st.window
      elseif st.live > 0 then
        reset = st.newest + st.window - st.now
      end
      local retry = 0
      if not allowed then
        -- the (used + need - limit)-th oldest live unit must leave the window first
        local idx = used + need - st.limit - 1
        if idx < st.live then
          local e = redis.call('ZRANGEBYSCORE', st.key, '(' .. (st.now - st.window), '+inf',
            'WITHSCORES', 'LIMIT', idx, 1)
          retry = tonumber(e[2]) + st.window - st.now
        else
          retry = st.window
        end
      end
      return allowed, st.limit, st.limit - used, reset, retry
    end,
    save = function(key, st)
      redis.call('ZREMRANGEBYSCORE', key, '-inf', st.now - st.window)
      local n = redis.call('ZCARD', key)
      local args = {}
      for i = 1, st.pending do
        args[#args + 1] = st.now
        args[#args + 1] = st.now .. '-' .. (n + i)
      end
      redis.call('ZADD', key, unpack(args))
      redis.call('PEXPIRE', key, st.window + 1)
    end,
  }
end
