-- apply_customers.lua: write customers' folded states, each unless someone else wrote it
-- after we read it (optimistic concurrency on the version in front of the state).
-- One call writes many customers (one reply for them all): a call per customer cost
-- more in the client's command packing and reply parsing than in Redis.
--
-- KEYS     three per customer, in the order of the customer blocks in ARGV:
--          state string   ({ns}:c:{id}): `<version>|<payload>` (streams.state_codec)
--          orders hash    ({ns}:c:{id}:orders): order id -> order within the horizon
--          outbox hash    ({ns}:c:{id}:outbox): event id -> entry (streams.outbox)
-- ARGV     one block per customer:
--          expected version (the one that was read; 0 for a new customer),
--          the state's payload, stored behind the new version,
--          o = number of changed orders, then o order-id/record pairs,
--          d = number of orders sealed or expired, then the d order ids (deleted),
--          e = number of output events, then e event-id/entry pairs: written with the
--          state or not at all, so a crash before the Kafka send loses none of them
-- returns  per customer, the new version, or -1 if the stored version was not the
--          expected one (that customer's block is skipped; the others are written)
-- On a Redis Cluster every key of a call must share one slot: the caller groups
-- customers by slot (each customer's keys share its hash tag {id}).

local written = {}
local i = 1
for c = 0, #KEYS / 3 - 1 do
  local state, orders, outbox = KEYS[3 * c + 1], KEYS[3 * c + 2], KEYS[3 * c + 3]
  local expected, payload = tonumber(ARGV[i]), ARGV[i + 1]
  local o = tonumber(ARGV[i + 2])
  local d = tonumber(ARGV[i + 3 + 2 * o])
  local e = tonumber(ARGV[i + 4 + 2 * o + d])
  local stored = redis.call('GET', state)
  local current = 0
  if stored then
    current = tonumber(string.match(stored, '^(%d+)|'))
    if not current then
      return redis.error_reply('rtba: ' .. state .. ' holds no rtba state')
    end
  end
  if current ~= expected then
    written[#written + 1] = -1
  else
    local version = current + 1
    redis.call('SET', state, version .. '|' .. payload)
    if o > 0 then
      redis.call('HSET', orders, unpack(ARGV, i + 3, i + 2 + 2 * o))
    end
    if d > 0 then
      redis.call('HDEL', orders, unpack(ARGV, i + 4 + 2 * o, i + 3 + 2 * o + d))
    end
    if e > 0 then
      redis.call('HSET', outbox, unpack(ARGV, i + 5 + 2 * o + d, i + 4 + 2 * o + d + 2 * e))
    end
    written[#written + 1] = version
  end
  i = i + 5 + 2 * o + d + 2 * e
end
return written
