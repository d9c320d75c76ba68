-- due_set.lua: set (or clear) customers' next due times in the bucketed due index, and
-- keep each touched bucket's least due time in the summary (streams/due_index.py).
--
-- KEYS     [1] the shard's summary sorted set: bucket number -> least due time in that bucket
--          [2..] the shard's bucket sorted sets touched: customer id -> due time (ms,
--          +inf while nothing is due), named `...:<bucket number>`
-- ARGV     [1] "set" (replace), "lt" (only ever move a due time earlier) or "nx" (only
--          add customers the bucket lacks)
--          then one triple per customer: index into KEYS of its bucket, customer id, due
--          time ("+inf", ms, or "" to take the customer out of the index)
-- returns  the number of customers written
-- Every key is one shard's and shares its hash tag, so one call stays in one Cluster slot.

local summary, mode = KEYS[1], ARGV[1]
local touched = {}
local n = 0
for i = 2, #ARGV, 3 do
  local k, id, due = tonumber(ARGV[i]), ARGV[i + 1], ARGV[i + 2]
  if due == '' then
    redis.call('ZREM', KEYS[k], id)
  elseif mode == 'lt' then
    redis.call('ZADD', KEYS[k], 'LT', due, id)
  elseif mode == 'nx' then
    redis.call('ZADD', KEYS[k], 'NX', due, id)
  else
    redis.call('ZADD', KEYS[k], due, id)
  end
  touched[k] = true
  n = n + 1
end
for k in pairs(touched) do
  local bucket = string.match(KEYS[k], ':(%d+)$')
  local least = redis.call('ZRANGE', KEYS[k], 0, 0, 'WITHSCORES')
  if least[1] then
    redis.call('ZADD', summary, least[2], bucket)
  else
    redis.call('ZREM', summary, bucket)
  end
end
return n
