--[[
  Sliding log (code 'slog'): exact; at most `limit` units in any `window` ms. State: a sorted set,
  one member per unit consumed, scored by its time (members "<ms>-<n>", n of six digits at least,
  unique). The gateway caps `limit` (so the set's size) when it validates a policy. Entries older
  than the window are removed on write; the key expires one window after its newest entry.
  A refund (check-n.lua) removes as many entries as a check consumed, the newest of those no
  newer than the check's (its time is the origin): if they are not its own, those left are newer,
  so they expire later than in a log that never saw the check.
]]
if need.slog then
  ALGOS.slog = {
    load = function(key, now, limit, window)
      local st = { origin = 0, key = key, limit = limit, window = window, pending = 0 }
      local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
      st.newest = tonumber(newest[2] or '0')
      st.last = newest[1]
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
        st.origin = st.now
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
      if st.refunds then
        for _, r in ipairs(st.refunds) do
          local gone = redis.call('ZRANGE', key, r[1], '-inf', 'BYSCORE', 'REV', 'LIMIT', 0, r[2])
          if #gone > 0 then redis.call('ZREM', key, unpack(gone)) end
        end
      end
      if st.pending == 0 then return end
      redis.call('ZREMRANGEBYSCORE', key, '-inf', st.now - st.window)
      local n = redis.call('ZCARD', key)
      -- Members must be unique: once a refund removed one of this ms, ZCARD + i could name one
      -- still there (and ZADD would count two units as one). The number is zero-padded, so the
      -- newest member (read by load) has the highest of its ms: numbering goes on from it.
      if st.newest == st.now and st.last then
        local k = tonumber(string.match(st.last, '%-(%d+)$'))
        if k and k > n then n = k end
      end
      local args = {}
      for i = 1, st.pending do
        args[#args + 1] = st.now
        args[#args + 1] = string.format('%d-%06d', st.now, n + i)
      end
      redis.call('ZADD', key, unpack(args))
      redis.call('PEXPIRE', key, st.window + 1)
    end,
  }
  -- Built only for a call that refunds (a function costs an allocation per call).
  if need.refund then
    ALGOS.slog.refund = function(st, units, at)
      -- Applied in save: the script writes nothing before it has read every key.
      st.refunds = st.refunds or {}
      st.refunds[#st.refunds + 1] = { at, units }
      st.dirty = true
    end
  end
end
