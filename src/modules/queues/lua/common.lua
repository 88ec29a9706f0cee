-- Shared by the queue scripts (spliced in where each has its include marker).
-- A stream entry has the fields d (the message's JSON) and t (enqueued at, Unix ms).

-- The value of one field of a stream entry's flat field list.
local function field(fields, name)
  for j = 1, #fields, 2 do
    if fields[j] == name then return fields[j + 1] end
  end
  return nil
end

-- A queue setting (hash field of <tenant>:qconf:<name>) as a number, else the default.
local function setting(key, name, default)
  return tonumber(redis.call('HGET', key, name) or default)
end

-- Stream ids compare by milliseconds, then sequence.
local function id_less(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am, bm = tonumber(am), tonumber(bm)
  if am ~= bm then return am < bm end
  return tonumber(as) < tonumber(bs)
end

-- Retention: once the stream is longer than `maxlen`, drop the history every group has
-- acknowledged: entries below the smallest id some group still needs (its oldest pending entry,
-- or for a group with nothing pending, its last delivered entry). An unacknowledged or unread
-- entry is never trimmed, so the stream may stay above `maxlen` while consumers lag. Without
-- groups nobody reads the stream yet and it is capped at `maxlen` (approximately).
local function trim(stream, maxlen)
  if redis.call('XLEN', stream) <= maxlen then return end
  local groups = redis.call('XINFO', 'GROUPS', stream)
  if #groups == 0 then
    redis.call('XTRIM', stream, 'MAXLEN', '~', maxlen)
    return
  end
  local safe = nil
  for _, g in ipairs(groups) do
    local name = field(g, 'name')
    local bound = field(g, 'last-delivered-id')
    if field(g, 'pending') > 0 then bound = redis.call('XPENDING', stream, name)[2] end
    if safe == nil or id_less(bound, safe) then safe = bound end
  end
  redis.call('XTRIM', stream, 'MINID', '~', safe)
end
