-- due_until.lua: the customers due by a time, from the buckets the summary named.
--
-- KEYS     bucket sorted sets of one due-index shard (customer id -> due time, ms)
-- ARGV     [1] the time (ms): customers due at or before it
--          [2] the most ids to return
-- returns  customer ids, bucket by bucket in KEYS order, at most ARGV[2]
-- Every key is one shard's and shares its hash tag, so one call stays in one Cluster slot.

local until_ms, limit = ARGV[1], tonumber(ARGV[2])
local out = {}
for _, bucket in ipairs(KEYS) do
  local ids = redis.call('ZRANGEBYSCORE', bucket, '-inf', until_ms, 'LIMIT', 0, limit - #out)
  for _, id in ipairs(ids) do
    out[#out + 1] = id
  end
  if #out >= limit then
    break
  end
end
return out
