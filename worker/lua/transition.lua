-- Move a running job to its next state, only for the holder of the current lease.
-- KEYS[1] job hash, KEYS[2] failed index (sorted set), KEYS[3] ref key or "", KEYS[4] idempotency key or ""
-- ARGV[1] lease token, ARGV[2] new state, ARGV[3] now, ARGV[4] ttl seconds for a succeeded job (0: keep)
-- ARGV[5..] field/value pairs to set; an empty value deletes the field.
-- Returns "ok", or "missing" / "lost_lease" / the current final state when refused.
local current = redis.call("HMGET", KEYS[1], "state", "lease_token")
if not current[1] then
  return "missing"
end
if current[1] == "succeeded" or current[1] == "failed" then
  return current[1]
end
if current[1] ~= "running" or current[2] ~= ARGV[1] then
  return "lost_lease"
end
redis.call("HSET", KEYS[1], "state", ARGV[2], "updated_at", ARGV[3])
redis.call("HDEL", KEYS[1], "lease_until", "lease_token")
for i = 5, #ARGV, 2 do
  if ARGV[i + 1] == "" then
    redis.call("HDEL", KEYS[1], ARGV[i])
  else
    redis.call("HSET", KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
if ARGV[2] == "succeeded" or ARGV[2] == "failed" then
  redis.call("HSET", KEYS[1], "finished_at", ARGV[3])
end
local job_id = string.match(KEYS[1], "[^:]+$")
if ARGV[2] == "failed" then
  redis.call("ZADD", KEYS[2], ARGV[3], job_id)
end
local ttl = tonumber(ARGV[4])
if ARGV[2] == "succeeded" and ttl > 0 then
  redis.call("EXPIRE", KEYS[1], ttl)
  for i = 3, 4 do
    -- an index that now points at a newer job with the same ref keeps living
    if KEYS[i] ~= "" and redis.call("GET", KEYS[i]) == job_id then
      redis.call("EXPIRE", KEYS[i], ttl)
    end
  end
end
return "ok"
