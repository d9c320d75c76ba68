-- apply_customers.lua: write customers' folded states, each unless someone else wrote it
-- after we read it (optimistic concurrency on the version in front of the state), with
-- the change that write makes to the population facts (streams.state.facts).
-- One call writes many customers (one reply for them all): a call per customer cost
-- more in the client's command packing and reply parsing than in Redis.
--
-- KEYS     five per customer, in the order of the customer blocks in ARGV:
--          state string   ({ns}:c:{id}): `<version>|<payload>`, the state and its orders
--                         (streams.state_codec)
--          outbox hash    ({ns}:c:{id}:outbox): event id -> entry (streams.outbox)
--          facts hash     ({ns}:facts:{tag}): the customer's shard of the population
--                         facts (on a Cluster, in the customer's slot)
--          cells hash     ({ns}:cells:{tag}): the same shard of the day cells
--                         (<x>:<first day>:<last day> -> customers), same slot
--          index zset     ({ns}:index:{tag}): the same shard of the member and
--                         ranking index (streams.read.ranking), same slot
-- ARGV     one block per customer:
--          expected version (the one that was read; 0 for a new customer),
--          the state's payload, stored behind the new version,
--          e = number of output events, then e event-id/entry pairs: written with the
--          state or not at all, so a crash before the Kafka send loses none of them,
--          f = number of fact changes, then f field/delta pairs (the new state's
--          contribution minus the read one's): HINCRBY'd only with the state, so a lost
--          or never-made write moves no fact; a field reaching 0 is deleted (absent = 0)
--          g = number of day-cell changes, then g cell/delta pairs: the same, on the
--          cells hash
--          h = number of index changes, then h entry/delta pairs (+1 in, -1 out): the
--          same, on the index zset
-- returns  per customer, the new version, or -1 if the stored version was not the
--          expected one (that customer's block is skipped; the others are written)
-- On a Redis Cluster every key of a call must share one slot: the caller groups
-- customers by slot (each customer's keys share its hash tag {id}; its facts shard's
-- tag maps to the same slot).

-- add(), add_members(): add_counts.lua and add_members.lua, put in front of this script
-- when it is loaded

local written = {}
local i = 1

for c = 0, #KEYS / 5 - 1 do
  local state, outbox = KEYS[5 * c + 1], KEYS[5 * c + 2]
  local facts, cells, index = KEYS[5 * c + 3], KEYS[5 * c + 4], KEYS[5 * c + 5]
  local expected, payload = tonumber(ARGV[i]), ARGV[i + 1]
  local e = tonumber(ARGV[i + 2])
  local at = i + 3 + 2 * e -- f, then its pairs
  local f = tonumber(ARGV[at])
  local g_at = at + 1 + 2 * f -- g, then its pairs
  local g = tonumber(ARGV[g_at])
  local h_at = g_at + 1 + 2 * g -- h, then its pairs
  local h = tonumber(ARGV[h_at])
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
    add(facts, at + 1, f)
    add(cells, g_at + 1, g)
    add_members(index, h_at + 1, h)
    written[#written + 1] = version
  end
  i = h_at + 1 + 2 * h
end
return written
