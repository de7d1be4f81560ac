-- Cancel a job nobody is attempting, for a person who queued it by mistake: queued or
-- retrying -> cancelled, a final state, so no claim ever sends it. Its idempotency key is
-- released (it made no ticket: the same row imported again is queued anew), unless an
-- earlier attempt may have made its ticket (uncertain_since): then the key keeps naming
-- this job, so the row imported again makes no second ticket. Its record expires like a
-- succeeded one.
-- KEYS[1] job hash, KEYS[2] due index, KEYS[3] its idempotency entry's bucket or "",
-- KEYS[4] its ref entry's bucket or "", KEYS[5] and KEYS[6] its batch (members, record) or
-- "", KEYS[7] and KEYS[8] the old keys of its idempotency and ref entries (or "")
-- ARGV[1] now, ARGV[2] job id, ARGV[3] ttl seconds of the record (0: keep), ARGV[4] and
-- ARGV[5] the fields of its idempotency and ref entries (or "")
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
if KEYS[3] ~= "" and not uncertain then
  index_drop(KEYS[3], ARGV[4], KEYS[7], ARGV[2])
end
-- Indexes an earlier version kept as keys of their own move into their buckets; an entry
-- lives as long as its job (sweep.lua).
if KEYS[3] ~= "" then
  index_move(KEYS[3], ARGV[4], KEYS[7])
end
if KEYS[4] ~= "" then
  index_move(KEYS[4], ARGV[5], KEYS[8])
end
local ttl = tonumber(ARGV[3])
if ttl > 0 then
  redis.call("EXPIRE", KEYS[1], ttl)
  if KEYS[5] ~= "" then
    redis.call("EXPIRE", KEYS[5], ttl)
    redis.call("EXPIRE", KEYS[6], ttl)
  end
end
return {CANCEL_OK}
