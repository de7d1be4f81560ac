-- Claim a job for one delivery: queued/retrying (or running with an expired lease) -> running.
-- KEYS[1] job hash, KEYS[2] due index, KEYS[3] failed index
-- ARGV[1] now, ARGV[2] lease until, ARGV[3] lease token, ARGV[4] job id,
-- ARGV[5] lost attempts after which the job is poison
-- Returns {CLAIM_OK, spec json (its parts joined), attempts, uncertain_since or "", reconcile_first or "",
-- lane, failing_since or ""}, or {CLAIM_MISSING}, {CLAIM_FINAL, state}, {CLAIM_LEASED, lease_until},
-- {CLAIM_NOT_DUE, next_attempt_at}.
local now = tonumber(ARGV[1])
local job = redis.call("HMGET", KEYS[1], "state", "lease_until", "next_attempt_at",
  "claimed_at", "lane")
local state = job[1]
if not state then
  return {CLAIM_MISSING}
end
if is_final(state) then
  return {CLAIM_FINAL, state}
end
if state == STATE_RUNNING then
  if tonumber(job[2] or "0") > now then
    return {CLAIM_LEASED, job[2]}
  end
  -- The previous holder died or hung during its delivery: a request it sent since it
  -- claimed the job may have created the ticket.
  local lost = redis.call("HINCRBY", KEYS[1], "lost_attempts", 1)
  if lost >= tonumber(ARGV[5]) then
    local error = cjson.encode({kind = KIND_POISON, message = "the worker was lost " .. lost ..
      " times in a row while attempting this job; not trying again"})
    redis.call("HSET", KEYS[1], "state", STATE_FAILED, "error", error, "updated_at", ARGV[1],
      "finished_at", ARGV[1])
    redis.call("HDEL", KEYS[1], "lease_until", "lease_token")
    redis.call("ZREM", KEYS[2], ARGV[4])
    redis.call("ZADD", KEYS[3], ARGV[1], ARGV[4])
    moved(KEYS[1], ARGV[4], job[5], state, STATE_FAILED, ARGV[1])
    return {CLAIM_FINAL, STATE_FAILED}
  end
  if job[4] and redis.call("HEXISTS", KEYS[1], "uncertain_since") == 0 then
    redis.call("HSET", KEYS[1], "uncertain_since", job[4])
  end
elseif state == STATE_RETRYING and tonumber(job[3] or "0") > now then
  -- A stray early message (the scheduler sends the real one when it is due).
  return {CLAIM_NOT_DUE, job[3]}
end
redis.call("HSET", KEYS[1], "state", STATE_RUNNING, "lease_until", ARGV[2], "lease_token", ARGV[3],
  "updated_at", ARGV[1], "claimed_at", ARGV[1])
redis.call("HDEL", KEYS[1], "next_attempt_at")
redis.call("HINCRBY", KEYS[1], "deliveries", 1)
redis.call("ZADD", KEYS[2], ARGV[2], ARGV[4])
moved(KEYS[1], ARGV[4], job[5], state, STATE_RUNNING, ARGV[1])
local found = redis.call("HMGET", KEYS[1], "spec", "attempts", "uncertain_since",
  "reconcile_first", "lane", "failing_since")
-- The body, as create.lua stored it: "spec", then its parts "spec:1", "spec:2", ...
local parts = {found[1] or ""}
while true do
  local part = redis.call("HGET", KEYS[1], "spec:" .. #parts)
  if not part then
    break
  end
  parts[#parts + 1] = part
end
return {CLAIM_OK, table.concat(parts), found[2] or "0", found[3] or "", found[4] or "",
  found[5] or "interactive", found[6] or ""}
