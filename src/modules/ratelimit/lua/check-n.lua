--[[
  Rate-limit decisions: one or more checks, decided and applied atomically in one round trip.
  The algorithms (lua/algorithms/*.lua, after the lease bookkeeping lua/lent.lua) are spliced in
  at the @include line when the script is loaded; each defines ALGOS.<code> = { load, decide,
  lease?, giveBack?, save } over one key of its own, when the call needs it (need.<code>):
  load(key, now, p1, p2, p3) reads the state (keeping the parameters in it), decide(st, now, cost)
  updates it in memory and returns allowed, limit, remaining, reset ms, retry-after ms;
  lease(st, want, leaseMs), right after a decide that consumed, takes up to `want` more units for
  the calling replica to give out itself and returns the units, the lease's ms, how much longer
  the state now takes to be fully restored (ms; 0 when the window decides) and what counted them
  (the lease's origin: a window's start or index, a bucket's lease generation, lent.lua);
  giveBack(st, units, origin, now, leaseMs), before the decide, uncounts units of an ended lease
  that the replica did not give out, if what counted them still counts;
  save(key, st) writes the state back with its expiry, only when a check consumed or gave back
  and the call applies; refund(st, units, origin, now), for an entry that is a refund (cost -1),
  uncounts units a check consumed when its caller had been refused without its answer (a policy
  that fails closed answered 503 before Redis ran it), as far as it can be sure a state that
  never saw that check would have as much room (the algorithms' headers say how); `origin` is
  what the check's own answer returned in its 8th integer.

  KEYS[1..n]  the state key of each check: <tenant>:rl:<policy>:<algorithm>:<identifier>
  ARGV[1]     now, ms since the epoch (the gateway's clock: time is an argument; see below)
  ARGV[2]     '1': all or nothing (nothing is consumed unless every check allows);
              '0': each check that allows consumes on its own
  ARGV[3+10(i-1) ..] per check i: algorithm code, p1, p2, p3, cost, shadow, want, leaseMs,
              back, backOrigin
              tb    token bucket    p1 capacity, p2 refill per ms (may be fractional), p3 unused
              gcra  GCRA            p1 emission interval ms (fractional), p2 burst, p3 unused
              slog  sliding log     p1 limit, p2 window ms, p3 unused
              swin  sliding window  p1 limit, p2 window ms, p3 unused
              fwin  fixed window    p1 limit, p2 window ms, p3 '1' calendar-aligned, '0' from the
                                    first request
              cost  units to consume (>= 0); 0 peeks: decides as for 1, consumes nothing
              shadow '1': a denial of this check does not stop the others (it is reported,
                    and the gateway allows it anyway)
              want  units to lease beyond the cost, when the check consumes (0: none); the
                    algorithm grants at most half of what is left (sliding log: never)
              leaseMs  the longest the replica holds a lease (its own clock), ms
              back, backOrigin  units of this replica's ended lease it did not give out, and the
                    origin the grant returned (0 0: none); uncounted only if that origin still
                    counts, so a lease of an earlier window, of a forgotten lease generation or
                    of a reset state gives none back
              A refund is an entry with cost -1: back is the units to uncount, backOrigin the
              consuming check's 8th integer; it decides nothing and answers 8 zeros.

  Returns  a flat array, 8 integers per check in order: allowed (1/0), limit, remaining (after
           the lease), resetMs (until fully restored if nothing more is consumed), retryAfterMs
           (0 when allowed: until this cost would be allowed), leased units (0 when none, and
           always 0 when an all-or-nothing call consumed nothing), lease ms (from the `now`
           given: the replica gives out no leased unit at or after now + lease ms), the lease's
           origin (a window's start or index, a bucket's lease generation; 0 for no lease); for a
           check that consumed and asked for no lease, its refund origin instead (st.origin: the
           window's start or index, the time a bucket or log counted it; 0 when nothing was
           consumed).

  Clocks: gateway replicas' clocks may disagree by a few ms (NTP). Every algorithm clamps "now" to
  the newest time it has stored, so a replica whose clock is behind can never make a bucket
  refill backwards or a window reopen; it merely sees no refill until its clock catches up.
  Checks of the same key within one call see each other's consumption. Every key carries an
  expiry: it disappears once it is indistinguishable from an absent key.
]]
local ALGOS = {}
local EPS = 1e-9
-- How far the clocks of gateway replicas may disagree, for a refund of a state that stores no
-- time (GCRA): far more than NTP keeps servers apart, and a refund is only worth its name for
-- slow limits, where a unit takes seconds to come back.
local REFUND_SKEW_MS = 1000
local floor, ceil, max, min = math.floor, math.ceil, math.max, math.min

-- Lua 5.1 allocates every function and table a script builds on every call: only the
-- algorithms this call uses are built (each file is guarded by `need.<code>`).
local need = {}
for b = 3, #ARGV, 10 do
  need[ARGV[b]] = true
  if ARGV[b + 4] == '-1' then need.refund = true end
end

-- @include

local now = tonumber(ARGV[1])
local atomic = ARGV[2] == '1'
local states, order, out = {}, {}, {}
local all = true
for i = 1, #KEYS do
  local b = 3 + (i - 1) * 10
  local algo = ALGOS[ARGV[b]]
  local key = KEYS[i]
  local p1, p2, p3 = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2]), ARGV[b + 3]
  local cost = tonumber(ARGV[b + 4])
  local st = states[key]
  if not st then
    st = algo.load(key, now, p1, p2, p3)
    st.algo = algo
    states[key] = st
    order[#order + 1] = key
  end
  local back = tonumber(ARGV[b + 8])
  if cost < 0 then
    -- A refund (service.ts): the check it undoes answered the origin; nothing is decided.
    algo.refund(st, back, tonumber(ARGV[b + 9]), now)
    for o = #out + 1, #out + 8 do out[o] = 0 end
  else
    if back > 0 and algo.giveBack then
      algo.giveBack(st, back, tonumber(ARGV[b + 9]), now, tonumber(ARGV[b + 7]))
    end
    st.origin = 0
    local allowed, limit, remaining, reset, retry = algo.decide(st, now, cost)
    if not allowed and ARGV[b + 5] ~= '1' then all = false end
    local want, units, leaseMs, later, window = tonumber(ARGV[b + 6]), 0, 0, 0, 0
    if allowed and cost > 0 and want > 0 and algo.lease then
      units, leaseMs, later, window = algo.lease(st, want, tonumber(ARGV[b + 7]))
    end
    local o = #out
    out[o + 1] = allowed and 1 or 0
    out[o + 2] = limit
    out[o + 3] = max(0, floor(remaining - units + EPS))
    out[o + 4] = max(0, ceil(reset + later - EPS))
    out[o + 5] = allowed and 0 or max(1, ceil(retry - EPS))
    out[o + 6] = units
    out[o + 7] = leaseMs
    if units > 0 then
      out[o + 8] = window
    else
      out[o + 8] = (want == 0 and allowed and cost > 0) and st.origin or 0
    end
  end
end
if all or not atomic then
  for _, key in ipairs(order) do
    local st = states[key]
    if st.dirty then st.algo.save(key, st) end
  end
else
  for o = 6, #out, 8 do out[o], out[o + 1], out[o + 2] = 0, 0, 0 end
end
return out
