-- Renew the lease of a delivery that is about to retry in-process, for the lease holder only.
-- KEYS[1] job hash, KEYS[2] due index
-- ARGV[1] lease token, ARGV[2] now, ARGV[3] lease until, ARGV[4] job id
-- Returns RENEW_OK, or RENEW_LOST_LEASE if another delivery took the job over (this one
-- must not send again).
local job = redis.call("HMGET", KEYS[1], "state", "lease_token")
if job[1] ~= STATE_RUNNING or job[2] ~= ARGV[1] then
  return RENEW_LOST_LEASE
end
redis.call("HSET", KEYS[1], "lease_until", ARGV[3], "updated_at", ARGV[2])
redis.call("ZADD", KEYS[2], ARGV[3], ARGV[4])
return RENEW_OK
