-- Messages for these jobs are on the queue. Each job keeps a watch in the due index: if
-- no delivery claims it by then, the scheduler looks again (a message can still be lost
-- between the queue and a worker). A job already claimed keeps its lease entry.
-- KEYS[1] due index; ARGV[1] job key prefix, ARGV[2] when to look again, ARGV[3..] job ids
for i = 3, #ARGV do
  if redis.call("HGET", ARGV[1] .. ARGV[i], "state") == STATE_QUEUED then
    redis.call("ZADD", KEYS[1], ARGV[2], ARGV[i])
  end
end
return #ARGV - 2
