-- Cancel a job nobody is attempting, for a person who queued it by mistake: queued or
-- retrying -> cancelled, a final state, so no claim ever sends it. Its idempotency key is
-- released (it made no ticket: the same row imported again is queued anew), unless an
-- earlier attempt may have made its ticket (uncertain_since): then the key keeps naming
-- this job, so the row imported again makes no second ticket. Its record expires like a
-- succeeded one.
-- KEYS[1] job hash, KEYS[2] due index, KEYS[3] idempotency key or "", KEYS[4] ref key or "",
-- KEYS[5] and KEYS[6] its batch (members, record) or ""
-- ARGV[1] now, ARGV[2] job id, ARGV[3] ttl seconds of the record (0: keep)
-- Returns {CANCEL_OK}, {CANCEL_MISSING}, {CANCEL_IN_FLIGHT} (a delivery holds it: its
-- attempt finishes; if it is handed back to retry, transition.lua answers
-- RECORDED_CANCEL_ASKED and its delivery cancels it then), {CANCEL_FINAL, state}.
local job = redis.call("HMGET", KEYS[1], "state", "uncertain_since", "lane")
local state, uncertain = job[1], job[2]
if not state then
  return {CANCEL_MISSING}
end
if is_final(state) then
  return {CANCEL_FINAL, state}
end
if state == STATE_RUNNING then
  redis.call("HSET", KEYS[1], "cancel_asked", ARGV[1])
  return {CANCEL_IN_FLIGHT}
end
redis.call("HSET", KEYS[1], "state", STATE_CANCELLED, "updated_at", ARGV[1], "finished_at",
  ARGV[1])
redis.call("HDEL", KEYS[1], "next_attempt_at", "reconcile_first", "failing_since",
  "cancel_asked")
redis.call("ZREM", KEYS[2], ARGV[2])
moved(KEYS[1], ARGV[2], job[3], state, STATE_CANCELLED, ARGV[1])
if KEYS[3] ~= "" and not uncertain and redis.call("GET", KEYS[3]) == ARGV[2] then
  redis.call("DEL", KEYS[3])
end
local ttl = tonumber(ARGV[3])
if ttl > 0 then
  redis.call("EXPIRE", KEYS[1], ttl)
  for i = 3, 4 do
    -- an index that names a newer job (or was released above) is not this job's to keep
    if KEYS[i] ~= "" and redis.call("GET", KEYS[i]) == ARGV[2] then
      redis.call("EXPIRE", KEYS[i], ttl)
    end
  end
  if KEYS[5] ~= "" then
    redis.call("EXPIRE", KEYS[5], ttl)
    redis.call("EXPIRE", KEYS[6], ttl)
  end
end
return {CANCEL_OK}
