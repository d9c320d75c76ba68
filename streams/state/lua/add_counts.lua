-- add_counts.lua: a function, not a script; streams.state.store.lua puts it in front of
-- the scripts that count (apply_customers.lua, erase_customer.lua), so the one rule for
-- a counter lives in one place.
--
-- add(hash, from, n): HINCRBY ``hash`` by each of the n field/delta pairs that start at
-- ARGV[from], deleting a field that reaches 0 (absent means 0: keeps the hashes small).
-- The delta goes as its text: a Lua number would round past 2^53.

local function add(hash, from, n)
  for j = from, from + 2 * n - 2, 2 do
    if redis.call('HINCRBY', hash, ARGV[j], ARGV[j + 1]) == 0 then
      redis.call('HDEL', hash, ARGV[j])
    end
  end
end

