-- advance_watermark.lua: raise event-time marks; never lowers one.
--
-- KEYS[1]  watermark hash ({ns}:watermark): fields `p:<partition>` (each partition's
--          mark, epoch ms) and `max_event_ts`
-- ARGV     field, value, field, value, ... (epoch ms)
-- returns  the number of fields raised

local raised = 0
for j = 1, #ARGV, 2 do
  local stored = redis.call('HGET', KEYS[1], ARGV[j])
  if not stored or tonumber(ARGV[j + 1]) > tonumber(stored) then
    redis.call('HSET', KEYS[1], ARGV[j], ARGV[j + 1])
    raised = raised + 1
  end
end
return raised
