-- Shared by the idempotency scripts (spliced in where each has its include marker).
--
-- A record is one string, so that begin creates it with its expiry in one command (SET ... PX)
-- and every other transition is one SET too: nothing for replicas and the AOF to wrap in
-- MULTI/EXEC (a hash and its PEXPIRE were two writes; per begin, the string measured 27-32 ->
-- 23-26 us of CPU on the master and 12-15 -> 6-10 us on each replica). Its layout:
--
--   i1|<state>|<token>|<lock>|<created>|<ttl>|<completed>|<fingerprint length>|<fingerprint><response>
--
-- state: s started, c completed; token: the holder's (server-made, base64url, never '|');
-- lock: the holder's lock expiry (Unix ms, empty once completed); created and completed:
-- Unix ms (completed empty until then); ttl: the record ttl (ms); the fingerprint ('' when none,
-- any text up to 512 characters) and the response JSON (empty until completed) are not
-- delimited, so may hold anything.
--
-- Records written by versions before this format are hashes (st 'started'|'completed', t, f,
-- l, c, ttl, r, ca): they are read alike, and the next transition rewrites them as strings.

-- The record at `key` as a table {st, t, f, l, c, ttl, ca, r}, or nil when there is none.
local function load(key)
  local v = redis.pcall('GET', key)
  if not v then return nil end
  if type(v) == 'table' then
    -- WRONGTYPE: a hash written by an earlier version
    local h = redis.call('HMGET', key, 'st', 't', 'f', 'l', 'c', 'ttl', 'r', 'ca')
    if not h[1] then return nil end
    return {st = h[1] == 'completed' and 'c' or 's', t = h[2], f = h[3] or '', l = h[4] or '',
      c = h[5] or '', ttl = h[6], r = h[7] or '', ca = h[8] or ''}
  end
  local st, t, l, c, ttl, ca, flen, at =
    string.match(v, '^i1|([sc])|([^|]*)|(%d*)|(%d*)|(%d+)|(%d*)|(%d+)|()')
  if not st then error('unreadable idempotency record at ' .. key) end
  local fend = at + tonumber(flen)
  return {st = st, t = t, l = l, c = c, ttl = ttl, ca = ca, f = string.sub(v, at, fend - 1),
    r = string.sub(v, fend)}
end

-- The string form of a record table.
local function encode(rec)
  return 'i1|' .. rec.st .. '|' .. rec.t .. '|' .. rec.l .. '|' .. rec.c .. '|' .. rec.ttl
    .. '|' .. rec.ca .. '|' .. #rec.f .. '|' .. rec.f .. rec.r
end
