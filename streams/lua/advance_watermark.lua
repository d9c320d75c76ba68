-- advance_watermark.lua: raise the shared event-time marks; never lowers them.
--
-- KEYS[1]  watermark hash ({ns}:watermark)
-- ARGV[1]  max event ts seen in a batch, epoch ms ('' if none)
-- ARGV[2]  max explicit watermark from producers, epoch ms ('' if none)
-- returns  {max_event_ts, explicit} after the update ('' where never set)

local fields = {'max_event_ts', 'explicit'}
local out = {}
for j = 1, 2 do
  local stored = redis.call('HGET', KEYS[1], fields[j])
  local given = ARGV[j]
  if given ~= '' and (not stored or tonumber(given) > tonumber(stored)) then
    redis.call('HSET', KEYS[1], fields[j], given)
    stored = given
  end
  out[j] = stored or ''
end
return out
