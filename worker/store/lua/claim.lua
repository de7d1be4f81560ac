-- Claim a job for one delivery: queued/retrying (or running with an expired lease) -> running.
-- KEYS[1] job hash, KEYS[2] due index, KEYS[3] failed index
-- ARGV[1] now, ARGV[2] lease until, ARGV[3] lease token, ARGV[4] job id,
-- ARGV[5] lost attempts after which the job is poison
-- Returns {CLAIM_OK, spec json, attempts, uncertain_since or "", reconcile_first or "", lane,
-- failing_since or "", account_id, ref or "", idempotency_key or "", batch_id or ""}, or
-- {CLAIM_MISSING}, {CLAIM_FINAL, state}, {CLAIM_LEASED, lease_until}, {CLAIM_NOT_DUE,
-- next_attempt_at}. The spec json lacks the fields after it if the record keeps them on
-- their own: a record written compactly (lua/lib/records.lua) keeps the ticket alone.
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
-- The spec's own fields, under either layout's names: each full name, then its compact one.
local apart = {}
for _, name in ipairs(SPEC_FIELDS) do
  apart[#apart + 1], apart[#apart + 2] = name, COMPACT[name]
end
local found = redis.call("HMGET", KEYS[1], "attempts", "uncertain_since", "reconcile_first",
  "lane", "failing_since", unpack(apart))
local answer = {CLAIM_OK, "", found[1] or "0", found[2] or "", found[3] or "",
  found[4] or "interactive", found[5] or ""}
for i = 6, #found, 2 do
  answer[#answer + 1] = found[i] or found[i + 1] or ""
end
-- The body: the ticket alone in a compact record, the spec whole in one written before.
local ticket = joined_parts(KEYS[1], true)
if ticket ~= "" then
  answer[2] = '{"ticket":' .. ticket .. "}"
else
  answer[2] = joined_parts(KEYS[1], false)
end
return answer
