-- erase_customer.lua: take a customer's state and outbox out of Redis in one step.
--
-- KEYS     state string ({ns}:c:{id}) and outbox hash ({ns}:c:{id}:outbox), one slot
-- ARGV     none
-- returns  the state as it was stored (nil when there was none), so the caller can take
--          the customer's place in the population histograms back out; and the number
--          of outbox entries deleted unsent
-- A worker that read the state before this ran finds it gone when it writes (its
-- expected version is no longer there) and folds its batch again from nothing.

local stored = redis.call('GET', KEYS[1])
local unsent = redis.call('HLEN', KEYS[2])
redis.call('DEL', KEYS[1], KEYS[2])
return {stored, unsent}
