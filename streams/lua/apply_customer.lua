-- apply_customer.lua: write one customer's folded state, unless someone else
-- wrote it after we read it (optimistic concurrency on the version field `v`).
--
-- KEYS[1]  customer state hash      ({ns}:c:{id})
-- KEYS[2]  refund-id set            ({ns}:c:{id}:dedup)
-- KEYS[3]  orders hash              ({ns}:c:{id}:orders)
-- KEYS[4]  outbox hash              ({ns}:c:{id}:outbox): event id -> entry (streams.outbox)
-- ARGV[1]  expected version (the `v` that was read; 0 for a new customer)
-- ARGV[2]  n = number of field/value pairs, then ARGV[3 .. 2+2n] the pairs
--          (an empty value deletes the field)
-- then     k = number of refund ids to add, then the k ids
-- then     o = number of changed orders, then o order-id/record pairs
-- then     e = number of output events, then e event-id/entry pairs: written with the
--          state or not at all, so a crash before the Kafka send loses none of them
-- returns  the new version, or -1 if the stored version was not ARGV[1]
-- All keys share the hash tag {id}: one Redis Cluster slot.

local current = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if current ~= tonumber(ARGV[1]) then
  return -1
end

local i = 2
local n = tonumber(ARGV[i])
local sets, dels = {}, {}
for j = 1, n do
  local f, v = ARGV[i + 2 * j - 1], ARGV[i + 2 * j]
  if v == '' then
    dels[#dels + 1] = f
  else
    sets[#sets + 1] = f
    sets[#sets + 1] = v
  end
end
i = i + 2 * n + 1
local version = current + 1
sets[#sets + 1] = 'v'
sets[#sets + 1] = tostring(version)
redis.call('HSET', KEYS[1], unpack(sets))
if #dels > 0 then
  redis.call('HDEL', KEYS[1], unpack(dels))
end

local k = tonumber(ARGV[i])
if k > 0 then
  redis.call('SADD', KEYS[2], unpack(ARGV, i + 1, i + k))
end
i = i + k + 1
local o = tonumber(ARGV[i])
if o > 0 then
  redis.call('HSET', KEYS[3], unpack(ARGV, i + 1, i + 2 * o))
end
i = i + 2 * o + 1
local e = tonumber(ARGV[i])
if e > 0 then
  redis.call('HSET', KEYS[4], unpack(ARGV, i + 1, i + 2 * e))
end
return version
