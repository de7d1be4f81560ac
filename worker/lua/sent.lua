-- Confirm that messages for these jobs are on the queue: they leave the due index, unless
-- a worker already claimed one (then its entry is the lease, which must stay).
-- KEYS[1] due index; ARGV[1] job key prefix, ARGV[2..] job ids
for i = 2, #ARGV do
  if redis.call("HGET", ARGV[1] .. ARGV[i], "state") == "queued" then
    redis.call("ZREM", KEYS[1], ARGV[i])
  end
end
return #ARGV - 1
