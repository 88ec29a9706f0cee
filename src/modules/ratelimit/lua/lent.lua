--[[
  Units on lease, for the token bucket and GCRA (spliced into check-n.lua before the algorithms).
  A lease hands units to one gateway replica, which gives them out without asking Redis, for at
  most leaseMs of its own clock. Those units left the bucket when they were granted, but they are
  used later. Without care the bucket would refill behind them: a full bucket that lends 10 units
  is full again soon, and 10 more would then pass with the lease. So while units may still be on
  lease, the bucket's cap is lowered by them. It can then never hold more than a bucket that saw
  each unit at the moment it was used, and no sequence of uses exceeds the limit.

  Bookkeeping: two generations, each "amount, forget-at". A generation takes leases granted up to
  leaseMs / 2 after it opened, and is forgotten 2 * leaseMs after it opened: at least leaseMs / 2
  after the last of its leases has expired on its replica. That margin covers clock skew between
  replicas, as the algorithms' clamps do. A full generation, and the previous one if it is still
  live, merge into the previous one.
  Fields of the state table: la, lf (this generation), pa, pf (the previous one); 0 when none.
  Units of an ended lease that were not given out are not given back to a bucket: a version that
  did (uncounting them from their generation while it was live) admitted more than the reference
  under clock skew in seeded tests, even with a margin of leaseMs / 2 on the liveness check.
]]
-- Built only for the algorithms that lend (a function costs an allocation per call).
local lent, lentHold, lend, lentSuffix, loadLent
if need.tb or need.gcra then
  lent = function(st, now)
    local n = 0
    if st.lf > now then n = n + st.la end
    if st.pf > now then n = n + st.pa end
    return n
  end

  -- How long (ms from now) the state must be kept for its leases: until both generations are gone.
  lentHold = function(st, now)
    return max(0, st.lf - now, st.pf - now)
  end

  lend = function(st, now, units, leaseMs)
    if st.lf <= now or now + 1.5 * leaseMs > st.lf then
      if st.lf > now then
        if st.pf > now then st.pa = st.pa + st.la else st.pa = st.la end
        st.pf = st.lf
      end
      st.la, st.lf = 0, now + 2 * leaseMs
    end
    st.la = st.la + units
  end

  -- The lease fields for a state string: empty once nothing can be on lease any more.
  lentSuffix = function(st, now)
    if lent(st, now) == 0 then return '' end
    return string.format(' %d %d %d %d', st.la, st.lf, st.pa, st.pf)
  end

  -- Reads the four lease fields from a state string, starting at position `from`.
  loadLent = function(st, v, from)
    local a, b, c, d = string.match(v, '^(%d+) (%d+) (%d+) (%d+)', from)
    st.la, st.lf, st.pa, st.pf = tonumber(a), tonumber(b), tonumber(c), tonumber(d)
  end
end
