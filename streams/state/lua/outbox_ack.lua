-- outbox_ack.lua: forget output events the broker acknowledged.
--
-- KEYS[1]  outbox hash ({ns}:c:{id}:outbox)
-- ARGV     the acknowledged event ids
-- returns  the entries left (0: the caller may take the customer out of the index)

redis.call('HDEL', KEYS[1], unpack(ARGV))
return redis.call('HLEN', KEYS[1])
