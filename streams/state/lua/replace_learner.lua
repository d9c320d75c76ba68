-- replace_learner.lua: store the cluster learner again without erased customers, unless
-- the trainer stored a newer one meanwhile (compare-and-set on the one hash field).
--
-- KEYS     the cluster model hash ({ns}:model:clusters)
-- ARGV[1]  the learner as the caller read it
-- ARGV[2]  the learner to store instead; an empty string deletes the field (a learner
--          the caller cannot read, such as an older rtba's pickle, may hold the ids)
-- returns  1 when replaced, 0 when the stored learner changed since it was read (the
--          caller reads it again: the trainer's own copy drops the customer at its
--          tombstone on the features topic anyway)
-- One key, so a Cluster runs it in one slot; a plain check-and-set never puts back an
-- older learner over the trainer's newer one (its snapshot version would go backwards).

if redis.call('HGET', KEYS[1], 'learner') ~= ARGV[1] then
  return 0
end
if ARGV[2] == '' then
  redis.call('HDEL', KEYS[1], 'learner')
else
  redis.call('HSET', KEYS[1], 'learner', ARGV[2])
end
return 1
