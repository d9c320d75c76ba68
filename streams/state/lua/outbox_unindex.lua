-- outbox_unindex.lua: take a customer out of the outbox index, unless a newer write
-- indexed it again.
--
-- KEYS[1]  outbox index sorted set ({ns}:outbox): customer id scored by the version of
--          the latest write that added entries (writers ZADD GT before their script)
-- ARGV[1]  customer id
-- ARGV[2]  the version the caller found its outbox empty after
-- returns  1 if removed, else 0
--
-- Writers index before they write, so an entry added after the caller looked has a
-- higher score, and stays indexed. A caller's bound is the version of a write that has
-- completed (its own acknowledged entries, or a state version the relay read before
-- finding the outbox empty), never an index score alone: a write indexed at that score
-- may not have run yet.

local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) <= tonumber(ARGV[2]) then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
