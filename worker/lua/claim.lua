-- Claim a job for one delivery: queued/retrying (or running with an expired lease) -> running.
-- KEYS[1] job hash, KEYS[2] due index, KEYS[3] failed index
-- ARGV[1] now, ARGV[2] lease until, ARGV[3] lease token, ARGV[4] job id,
-- ARGV[5] lost attempts after which the job is poison
-- Returns {"ok", spec json, attempts, uncertain_since or "", reconcile_first or "", lane}, or
-- {"missing"},
-- {"final", state}, {"leased", lease_until}, {"not_due", next_attempt_at}.
local now = tonumber(ARGV[1])
local job = redis.call("HMGET", KEYS[1], "state", "lease_until", "next_attempt_at",
  "claimed_at")
local state = job[1]
if not state then
  return {"missing"}
end
if state == "succeeded" or state == "failed" then
  return {"final", state}
end
if state == "running" then
  if tonumber(job[2] or "0") > now then
    return {"leased", job[2]}
  end
  -- The previous holder died or hung during its delivery: a request it sent since it
  -- claimed the job may have created the ticket.
  local lost = redis.call("HINCRBY", KEYS[1], "lost_attempts", 1)
  if lost >= tonumber(ARGV[5]) then
    local error = cjson.encode({kind = "poison", message = "the worker was lost " .. lost ..
      " times in a row while attempting this job; not trying again"})
    redis.call("HSET", KEYS[1], "state", "failed", "error", error, "updated_at", ARGV[1],
      "finished_at", ARGV[1])
    redis.call("HDEL", KEYS[1], "lease_until", "lease_token")
    redis.call("ZREM", KEYS[2], ARGV[4])
    redis.call("ZADD", KEYS[3], ARGV[1], ARGV[4])
    return {"final", "failed"}
  end
  if job[4] and redis.call("HEXISTS", KEYS[1], "uncertain_since") == 0 then
    redis.call("HSET", KEYS[1], "uncertain_since", job[4])
  end
elseif state == "retrying" and tonumber(job[3] or "0") > now then
  -- A stray early message (the scheduler sends the real one when it is due).
  return {"not_due", job[3]}
end
redis.call("HSET", KEYS[1], "state", "running", "lease_until", ARGV[2], "lease_token", ARGV[3],
  "updated_at", ARGV[1], "claimed_at", ARGV[1])
redis.call("HDEL", KEYS[1], "next_attempt_at")
redis.call("HINCRBY", KEYS[1], "deliveries", 1)
redis.call("ZADD", KEYS[2], ARGV[2], ARGV[4])
local found = redis.call("HMGET", KEYS[1], "spec", "attempts", "uncertain_since",
  "reconcile_first", "lane")
return {"ok", found[1], found[2] or "0", found[3] or "", found[4] or "",
  found[5] or "interactive"}
