-- topic_epoch.lua: the incarnation number of the events topic, from its Kafka topic id.
--
-- KEYS[1]  topic hash ({ns}:topic): `id` (the topic id last seen), `epoch`
-- ARGV[1]  the topic id the caller sees now ('' if it cannot tell: the stored epoch)
-- returns  {epoch, changed}: changed is 1 when this call found a new topic id (the topic
--          was deleted and re-created, so offsets restarted) and raised the epoch
--
-- A first call records the id at epoch 0.

local stored = redis.call('HGET', KEYS[1], 'id')
local epoch = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0')
if ARGV[1] == '' or stored == ARGV[1] then
  return {epoch, 0}
end
if stored then
  epoch = epoch + 1
end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'epoch', epoch)
if stored then
  return {epoch, 1}
end
return {epoch, 0}
