-- Claim a job for one delivery: queued/retrying (or running with an expired lease) -> running.
-- KEYS[1] job hash, KEYS[2] due index, KEYS[3] failed index
-- ARGV[1] now, ARGV[2] lease until, ARGV[3] lease token, ARGV[4] job id,
-- ARGV[5] lost attempts after which the job is poison
-- Returns {CLAIM_OK, spec json (its parts joined: without the fields below, if written since
-- the spec's other fields are the record's own), attempts, uncertain_since or "",
-- reconcile_first or "", lane, failing_since or "", account_id, ref or "", idempotency_key
-- or "", batch_id or ""}, or {CLAIM_MISSING}, {CLAIM_FINAL, state}, {CLAIM_LEASED,
-- lease_until}, {CLAIM_NOT_DUE, next_attempt_at}.
-- A record create.lua wrote compactly gets its full names (lua/lib/records.lua) as it is
-- first claimed, since every other script reads those, and its body becomes its spec: the
-- ticket under "ticket" (the spec's other fields are the record's own).
local function full_names(job)
  local compact = {}
  for i, name in ipairs(COMPACT_NAMES) do
    compact[i] = COMPACT[name]
  end
  local values = redis.call("HMGET", job, unpack(compact))
  if not values[1] then
    return  -- no compact account id: written with its full names (every record has one)
  end
  local body, parts = joined_parts(job, true)
  local fields = {}
  for i, name in ipairs(COMPACT_NAMES) do
    if values[i] then
      fields[#fields + 1], fields[#fields + 2] = name, values[i]
    end
  end
  for n = 0, parts - 1 do
    compact[#compact + 1] = part_name(true, n)
  end
  redis.call("HDEL", job, unpack(compact))
  redis.call("HSET", job, unpack(add_parts(fields, '{"ticket":' .. body .. "}", false)))
end

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
full_names(KEYS[1])
redis.call("HSET", KEYS[1], "state", STATE_RUNNING, "lease_until", ARGV[2], "lease_token", ARGV[3],
  "updated_at", ARGV[1], "claimed_at", ARGV[1])
redis.call("HDEL", KEYS[1], "next_attempt_at")
redis.call("HINCRBY", KEYS[1], "deliveries", 1)
redis.call("ZADD", KEYS[2], ARGV[2], ARGV[4])
moved(KEYS[1], ARGV[4], job[5], state, STATE_RUNNING, ARGV[1])
local found = redis.call("HMGET", KEYS[1], "attempts", "uncertain_since", "reconcile_first",
  "lane", "failing_since", "account_id", "ref", "idempotency_key", "batch_id")
return {CLAIM_OK, (joined_parts(KEYS[1], false)), found[1] or "0", found[2] or "",
  found[3] or "", found[4] or "interactive", found[5] or "", found[6] or "", found[7] or "",
  found[8] or "", found[9] or ""}
