-- add_members.lua: a function, not a script; streams.state.store.lua puts it in front of
-- the scripts that keep the member and ranking index (apply_customers.lua,
-- erase_customer.lua), next to add_counts.lua's counters.
--
-- add_members(zset, from, n): for each of the n member/delta pairs that start at
-- ARGV[from], ZADD the member with score 0 when the delta is positive, ZREM it when
-- negative (a member is in or out: the deltas are +1 and -1, streams.state.facts).

local function add_members(zset, from, n)
  for j = from, from + 2 * n - 2, 2 do
    if tonumber(ARGV[j + 1]) > 0 then
      redis.call('ZADD', zset, 0, ARGV[j])
    else
      redis.call('ZREM', zset, ARGV[j])
    end
  end
end

