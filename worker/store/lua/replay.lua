-- Put a failed job back on the way to the queue, for a person who decided to try it again.
-- KEYS[1] job hash, KEYS[2] failed index, KEYS[3] due index
-- ARGV[1] now, ARGV[2] when the scheduler sends it if its message is never confirmed sent,
-- ARGV[3] job id, ARGV[4] "1": the person checked that its ticket does not exist (send
-- without reconciling), else ""
-- Returns {DEAD_OK, lane}, or {DEAD_MISSING}, {DEAD_NOT_FAILED, state},
-- {DEAD_HAS_TICKET, ticket id}.
local job = redis.call("HMGET", KEYS[1], "state", "ticket_id", "error", "uncertain_since",
  "claimed_at", "created_at", "lane", COMPACT.created_at)  -- either layout's (records.lua)
if not job[1] then
  return {DEAD_MISSING}
end
if job[1] ~= STATE_FAILED then
  return {DEAD_NOT_FAILED, job[1]}
end
if job[2] and job[2] ~= "" then
  return {DEAD_HAS_TICKET, job[2]}
end
local kind = ""
if job[3] then
  local ok, decoded = pcall(cjson.decode, job[3])
  if ok and type(decoded) == "table" and type(decoded.kind) == "string" then
    kind = decoded.kind
  end
end
-- The error stays: it shows the last failure until a new outcome replaces it.
redis.call("HSET", KEYS[1], "state", STATE_QUEUED, "attempts", "0", "updated_at", ARGV[1])
redis.call("HDEL", KEYS[1], "lost_attempts", "finished_at", "next_attempt_at")
redis.call("HINCRBY", KEYS[1], "replays", 1)
-- The ticket may exist (parked as uncertain, a worker lost mid-request, or an earlier
-- ambiguous attempt): the runner looks for it before sending, whatever the policy says,
-- unless a person has looked and found none.
if ARGV[4] == "1" then
  redis.call("HDEL", KEYS[1], "uncertain_since", "reconcile_first")
elseif kind == KIND_UNCERTAIN or kind == KIND_POISON or job[4] then
  redis.call("HSET", KEYS[1], "uncertain_since", job[4] or job[5] or job[6] or job[8],
    "reconcile_first", "1")
end
redis.call("ZREM", KEYS[2], ARGV[3])
-- The outbox, as for a new job: until the message is confirmed sent, the scheduler sends it.
redis.call("ZADD", KEYS[3], ARGV[2], ARGV[3])
moved(KEYS[1], ARGV[3], job[7], STATE_FAILED, STATE_QUEUED, ARGV[1])
return {DEAD_OK, job[7] or "interactive"}
