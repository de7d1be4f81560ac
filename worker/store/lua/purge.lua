-- Delete a failed job and the indexes that still name it.
-- KEYS[1] job hash, KEYS[2] failed index, KEYS[3] due index, KEYS[4] its ref entry's bucket
-- or "", KEYS[5] its idempotency entry's bucket or "", KEYS[6] batch (sorted set) or "",
-- KEYS[7] and KEYS[8] the old keys of its ref and idempotency entries (or "")
-- ARGV[1] job id, ARGV[2] and ARGV[3] the fields of its ref and idempotency entries (or "")
-- Returns {DEAD_OK}, or {DEAD_MISSING} (its stray index entries removed),
-- {DEAD_NOT_FAILED, state}.
local job = redis.call("HMGET", KEYS[1], "state", "lane")
local state = job[1]
if not state then
  redis.call("ZREM", KEYS[2], ARGV[1])
  redis.call("ZREM", KEYS[3], ARGV[1])
  return {DEAD_MISSING}
end
if state ~= STATE_FAILED then
  return {DEAD_NOT_FAILED, state}
end
redis.call("DEL", KEYS[1])
moved(KEYS[1], ARGV[1], job[2], STATE_FAILED, nil, "0")
redis.call("ZREM", KEYS[2], ARGV[1])
redis.call("ZREM", KEYS[3], ARGV[1])
for i = 4, 5 do
  -- a ref or idempotency entry that now names a newer job belongs to that job
  if KEYS[i] ~= "" then
    index_drop(KEYS[i], ARGV[i - 2], KEYS[i + 3], ARGV[1])
  end
end
if KEYS[6] ~= "" then
  redis.call("ZREM", KEYS[6], ARGV[1])
end
return {DEAD_OK}
