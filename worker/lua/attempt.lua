-- Count one request about to be sent and renew the lease for it, for the lease holder only.
-- KEYS[1] job hash, KEYS[2] due index
-- ARGV[1] lease token, ARGV[2] now, ARGV[3] lease until, ARGV[4] job id, ARGV[5] "1" when
-- reconciliation found no ticket, so the job is no longer uncertain
-- Returns the job's attempts including this one, or -1 if the lease was lost.
local job = redis.call("HMGET", KEYS[1], "state", "lease_token")
if job[1] ~= "running" or job[2] ~= ARGV[1] then
  return -1
end
redis.call("HSET", KEYS[1], "attempt_started_at", ARGV[2], "lease_until", ARGV[3],
  "updated_at", ARGV[2])
redis.call("ZADD", KEYS[2], ARGV[3], ARGV[4])
if ARGV[5] == "1" then
  redis.call("HDEL", KEYS[1], "uncertain_since", "reconcile_first")
end
return redis.call("HINCRBY", KEYS[1], "attempts", 1)
