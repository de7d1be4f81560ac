-- Claim a job for one delivery: queued/retrying (or running with an expired lease) -> running.
-- A fresh job (queued, never sent, not let out of a line, nothing to reconcile) whose lane's
-- line at the API key holds anyone is not claimed: admit.lua would only put it in that line,
-- so it joins it here (lua/lib/lines.lua), handed back held back as a delivery would have
-- recorded it, and a delivery claims it once release.lua lets it out. Waiting for the rate
-- then costs a worker no claim, no admission and no record of its own.
-- KEYS[1] job hash, KEYS[2] due index, KEYS[3] failed index, KEYS[4] and KEYS[5] the API
-- key's interactive and bulk lines, KEYS[6] their shares, KEYS[7] their turns (each "",
-- or none given: no lining up)
-- ARGV[1] now, ARGV[2] lease until, ARGV[3] lease token, ARGV[4] job id,
-- ARGV[5] lost attempts after which the job is poison, ARGV[6] the key's pace (µs a job),
-- ARGV[7] a lined job's error (JSON), ARGV[8] an account's weight in the lines, then
-- ARGV[9..] account/weight pairs for those weighed otherwise
-- Returns {CLAIM_OK, spec json, attempts, uncertain_since or "", reconcile_first or "", lane,
-- failing_since or "", account_id, ref or "", idempotency_key or "", batch_id or ""}, or
-- {CLAIM_MISSING}, {CLAIM_FINAL, state}, {CLAIM_LEASED, lease_until}, {CLAIM_NOT_DUE,
-- next_attempt_at}, {CLAIM_LINED, µs it may wait in line before it is due by itself}. The
-- spec json lacks the fields after it if the record keeps them on their own: a record
-- written compactly (lua/lib/records.lua) keeps the ticket alone.
local now = tonumber(ARGV[1])
local job = redis.call("HMGET", KEYS[1], "state", "lease_until", "next_attempt_at",
  "claimed_at", "lane")
local state = job[1]

-- The job joins its lane's line, unclaimed, if that line holds anyone and the job is fresh;
-- returns how long it may wait there (µs), or nil.
local function line_up(lane)
  local lines = {interactive = KEYS[4], bulk = KEYS[5]}
  if redis.call("ZCARD", lines[lane]) == 0 or redis.call("ZSCORE", KEYS[7], ARGV[4]) then
    return nil
  end
  local more = redis.call("HMGET", KEYS[1], "uncertain_since", "reconcile_first", "account_id",
    COMPACT.account_id)
  if more[1] or more[2] then
    return nil
  end
  local account = more[3] or more[4]
  local weight = tonumber(ARGV[8])
  for i = 9, #ARGV, 2 do
    if ARGV[i] == account then
      weight = tonumber(ARGV[i + 1])
    end
  end
  local wait = join_line(lines, KEYS[6], lane, account, weight, ARGV[4], tonumber(ARGV[6]))
  local due = string.format("%.3f", now + wait / 1000000)
  redis.call("HSET", KEYS[1], "state", STATE_RETRYING, "error", ARGV[7], "next_attempt_at", due,
    "updated_at", ARGV[1])
  redis.call("ZADD", KEYS[2], due, ARGV[4])
  moved(KEYS[1], ARGV[4], lane, STATE_QUEUED, STATE_RETRYING, ARGV[1])
  held_back(KEYS[1], lane)
  return wait
end

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
elseif state == STATE_QUEUED and (KEYS[4] or "") ~= "" then
  local wait = line_up(job[5] or "interactive")
  if wait then
    return {CLAIM_LINED, string.format("%d", wait)}
  end
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
