-- apply_customers.lua: write customers' folded states, each unless someone else wrote it
-- after we read it (optimistic concurrency on the version in front of the state).
-- One call writes many customers (one reply for them all): a call per customer cost
-- more in the client's command packing and reply parsing than in Redis.
--
-- KEYS     two per customer, in the order of the customer blocks in ARGV:
--          state string   ({ns}:c:{id}): `<version>|<payload>`, the state and its orders
--                         (streams.state_codec)
--          outbox hash    ({ns}:c:{id}:outbox): event id -> entry (streams.outbox)
-- ARGV     one block per customer:
--          expected version (the one that was read; 0 for a new customer),
--          the state's payload, stored behind the new version,
--          e = number of output events, then e event-id/entry pairs: written with the
--          state or not at all, so a crash before the Kafka send loses none of them
-- returns  per customer, the new version, or -1 if the stored version was not the
--          expected one (that customer's block is skipped; the others are written)
-- On a Redis Cluster every key of a call must share one slot: the caller groups
-- customers by slot (each customer's keys share its hash tag {id}).

local written = {}
local i = 1
for c = 0, #KEYS / 2 - 1 do
  local state, outbox = KEYS[2 * c + 1], KEYS[2 * c + 2]
  local expected, payload = tonumber(ARGV[i]), ARGV[i + 1]
  local e = tonumber(ARGV[i + 2])
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
    if e > 0 then
      redis.call('HSET', outbox, unpack(ARGV, i + 3, i + 2 + 2 * e))
    end
    written[#written + 1] = version
  end
  i = i + 3 + 2 * e
end
return written
