-- erase_customer.lua: take a customer's state and outbox out of Redis in one step.
--
-- KEYS     state string ({ns}:c:{id}) and outbox hash ({ns}:c:{id}:outbox), one slot
-- ARGV[1]  optional: the state version the caller read; if the stored one differs (the
--          customer was written since: an event came back), nothing is erased
-- returns  {the state as it was stored, or nil when there was none; the number of
--          outbox entries deleted unsent}, or {nil, -1} when the version differed.
--          The caller takes the customer's place in the population histograms back
--          out from the returned state.
-- A worker that read the state before this ran finds it gone when it writes (its
-- expected version is no longer there) and folds its batch again from nothing.

local stored = redis.call('GET', KEYS[1])
if ARGV[1] then
  local current = stored and tonumber(string.match(stored, '^(%d+)|')) or 0
  if current ~= tonumber(ARGV[1]) then
    return {false, -1}
  end
end
local unsent = redis.call('HLEN', KEYS[2])
redis.call('DEL', KEYS[1], KEYS[2])
return {stored, unsent}
