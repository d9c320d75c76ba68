-- due_set.lua: set (or clear) customers' next due times in the bucketed due index, and
-- keep each touched bucket's least due time in the summary (streams/due_index.py).
--
-- KEYS     the summary sorted sets of the shards touched (bucket number -> least due time in
--          that bucket) and the bucket sorted sets touched (customer id -> due time, ms,
--          +inf while nothing is due), each named `<its shard's summary>:<bucket number>`
-- ARGV     [1] "set" (replace), "lt" (only ever move a due time earlier) or "nx" (only
--          add customers the bucket lacks)
--          then one quadruple per customer: index into KEYS of its shard's summary, index
--          of its bucket, customer id, due time ("+inf", ms, or "" to take the customer out
--          of the index)
-- returns  the number of customers written
-- On a Cluster each call holds one shard's keys, which share its hash tag (one slot); on
-- a single server one call may hold several shards'.

local mode = ARGV[1]
local touched = {}
local n = 0
for i = 2, #ARGV, 4 do
  local s, k, id, due = tonumber(ARGV[i]), tonumber(ARGV[i + 1]), ARGV[i + 2], ARGV[i + 3]
  if due == '' then
    redis.call('ZREM', KEYS[k], id)
  elseif mode == 'lt' then
    redis.call('ZADD', KEYS[k], 'LT', due, id)
  elseif mode == 'nx' then
    redis.call('ZADD', KEYS[k], 'NX', due, id)
  else
    redis.call('ZADD', KEYS[k], due, id)
  end
  touched[k] = s
  n = n + 1
end
for k, s in pairs(touched) do
  local bucket = string.match(KEYS[k], ':(%d+)$')
  local least = redis.call('ZRANGE', KEYS[k], 0, 0, 'WITHSCORES')
  if least[1] then
    redis.call('ZADD', KEYS[s], least[2], bucket)
  else
    redis.call('ZREM', KEYS[s], bucket)
  end
end
return n
