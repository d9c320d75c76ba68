-- erase_customer.lua: take a customer's state and outbox out of Redis in one step, and
-- its contribution out of the population facts and day cells (streams.state.facts) in
-- the same step.
--
-- KEYS     state string ({ns}:c:{id}), outbox hash ({ns}:c:{id}:outbox), the
--          customer's facts shard ({ns}:facts:{tag}), day-cells shard
--          ({ns}:cells:{tag}) and index shard ({ns}:index:{tag}), one slot
-- ARGV     optional: the state version the caller read, then f and f field/delta
--          pairs (minus that state's contribution), then g and g cell/delta pairs (minus
--          its day cell), then h and h entry/delta pairs (its index entries, -1). If the
--          stored version differs (the customer was written since: an event came back,
--          or it is gone already),
--          nothing is erased and no fact moves. A state rtba cannot read comes with
--          the version in front of it (0 if none) and only its index entries, found
--          by a scan. Without ARGV the state is deleted whatever its version and no
--          fact moves.
-- returns  {the state as it was stored, or nil when there was none; the number of
--          outbox entries deleted unsent}, or {nil, -1} when the version differed.
-- A worker that read the state before this ran finds it gone when it writes (its
-- expected version is no longer there) and folds its batch again from nothing. A
-- re-run of an erase that died after this call finds no state: version 0, nothing to
-- take out again.

local stored = redis.call('GET', KEYS[1])
if ARGV[1] then
  local current = stored and tonumber(string.match(stored, '^(%d+)|')) or 0
  if current ~= tonumber(ARGV[1]) then
    return {false, -1}
  end
end
local unsent = redis.call('HLEN', KEYS[2])
redis.call('DEL', KEYS[1], KEYS[2])
local f = tonumber(ARGV[2] or 0)
local g = tonumber(ARGV[3 + 2 * f] or 0)
local h_at = 4 + 2 * f + 2 * g
local h = tonumber(ARGV[h_at] or 0)
-- add(), add_members(): add_counts.lua and add_members.lua, put in front of this script
add(KEYS[3], 3, f)
add(KEYS[4], 4 + 2 * f, g)
add_members(KEYS[5], h_at + 1, h)
return {stored, unsent}
