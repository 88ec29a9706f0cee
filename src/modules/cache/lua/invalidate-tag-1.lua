--[[
  One batch of an invalidation by tag: takes up to ARGV[4] members of the tag set, deletes each
  entry that still carries the tag (and removes it from its other tags' sets), and removes every
  member taken from the set.

  A member may name an entry that no longer carries the tag: one that expired while the set
  lived on (a set expires with its longest-lived member) or went by a prefix or pattern
  invalidation, and was stored again without the tag. Such an entry is left alone. Only the
  entry's header is read (GETRANGE), never a large value. An entry whose header cannot be read
  (not the v1 envelope) is deleted: an invalidation must never leave a tagged value behind.

  KEYS[1]  the tag set: <tenant>:tag:<tag>
  ARGV[1]  the tag
  ARGV[2]  prefix of the tenant's tag sets (<tenant>:tag:, from redis/keys.ts)
  ARGV[3]  prefix of the tenant's entries (<tenant>:cache:); other members are only removed
  ARGV[4]  most members to take

  Returns  {taken, deleted entry key, ...}: taken 0 when the set is empty.
]]
-- The longest v1 header: 3 bytes, two 16-digit times, an etag, 32 tags of 128 characters.
local HEADER_MAX = 8192

local members = redis.call('SRANDMEMBER', KEYS[1], ARGV[4])
if #members == 0 then return {0} end
local out = {#members}
local gone = {}
local tag, prefix = ARGV[1], ARGV[3]
for _, m in ipairs(members) do
  if string.sub(m, 1, #prefix) == prefix then
    local head = redis.call('GETRANGE', m, 0, HEADER_MAX - 1)
    if head ~= '' then
      local tags = nil
      if string.byte(head, 1) == 1 then
        local nl = string.find(head, '\n', 4, true)
        if nl then
          local _, _, _, t = string.match(string.sub(head, 4, nl - 1), '^(%d*),(%d*),([^,]*),(.*)$')
          tags = t
        end
      end
      local carries = tags == nil or tags == tag
      if not carries then
        for t in string.gmatch(tags, '[^|]+') do
          if t == tag then carries = true end
        end
      end
      if carries then
        if tags and tags ~= tag then
          for t in string.gmatch(tags, '[^|]+') do
            if t ~= tag then redis.call('SREM', ARGV[2] .. t, m) end
          end
        end
        gone[#gone + 1] = m
        out[#out + 1] = m
      end
    end
  end
end
if #gone > 0 then redis.call('UNLINK', unpack(gone)) end
redis.call('SREM', KEYS[1], unpack(members))
return out
