-- Claim a job for one attempt: queued/retrying (or running with an expired lease) -> running.
-- KEYS[1] job hash
-- ARGV[1] now, ARGV[2] lease until, ARGV[3] lease token
-- Returns {"ok", spec json, attempts} or {"missing"} / {"final", state} / {"leased", lease_until}.
local state = redis.call("HGET", KEYS[1], "state")
if not state then
  return {"missing"}
end
if state == "succeeded" or state == "failed" then
  return {"final", state}
end
if state == "running" then
  local lease = tonumber(redis.call("HGET", KEYS[1], "lease_until") or "0")
  if lease > tonumber(ARGV[1]) then
    return {"leased", tostring(lease)}
  end
end
redis.call("HSET", KEYS[1], "state", "running", "lease_until", ARGV[2], "lease_token", ARGV[3],
  "updated_at", ARGV[1])
redis.call("HDEL", KEYS[1], "next_attempt_at")
redis.call("HINCRBY", KEYS[1], "deliveries", 1)
local found = redis.call("HMGET", KEYS[1], "spec", "attempts")
return {"ok", found[1], found[2] or "0"}
