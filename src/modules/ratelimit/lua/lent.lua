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

  Giving back: a lease names the generation it went into by that generation's forget-at (lf when
  granted). Units of it that its replica did not give out, and never will, can be uncounted while
  that generation is live and still has that forget-at: the cap is raised by them and they go
  back into the bucket (unlend). A generation merged into a newer one takes the newer one's
  forget-at, so its own leases give nothing back (safe: they merely stay counted until it is
  forgotten). Why it is safe: units of ended leases that were not given out, and not yet given
  back, stay in their generation's amount, so the lowered cap keeps the bucket that much below
  the one that saw each use; giving k of them back raises the bucket and its cap by k and keeps
  both bounds. Once their generation is forgotten the bucket may have refilled to the full cap,
  and units given back then would come on top: they give nothing back.
  Clock skew: "live" is judged at the newest time any replica may have judged it, or a replica
  behind would give back units of a generation that one ahead has already seen forgotten. The
  token bucket takes its stored time (the newest a check that consumed brought); GCRA stores no
  time and asks the generation to live leaseMs / 2 more (the most replicas' clocks may disagree).
  And a check that consumes nothing but gives back stores no more than the give-back: not the
  token bucket's refill to its time (its clock may be ahead: the bucket would refill for the
  replicas behind), not the GCRA TAT as its clamp lowered it (its clock may be behind: seeded
  tests with replicas 400 ms apart, leases.test.ts, found that one).
]]
-- Built only for the algorithms that lend (a function costs an allocation per call).
local lent, lentHold, lend, unlend, lentSuffix, loadLent
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

  -- Uncounts up to `units` of a lease granted into generation `gen` (its forget-at), if that
  -- generation is live at `now`; returns the units uncounted (0: none).
  unlend = function(st, now, units, gen)
    if gen == st.lf and st.lf > now then
      units = min(units, st.la)
      st.la = st.la - units
      return units
    end
    if gen == st.pf and st.pf > now then
      units = min(units, st.pa)
      st.pa = st.pa - units
      return units
    end
    return 0
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
