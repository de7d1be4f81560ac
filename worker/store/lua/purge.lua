-- Delete a failed job and the indexes that still name it.
-- KEYS[1] job hash, KEYS[2] failed index, KEYS[3] due index, KEYS[4] ref key or "",
-- KEYS[5] idempotency key or "", KEYS[6] batch (sorted set) or ""
-- ARGV[1] job id
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
  -- a ref or idempotency key that now names a newer job belongs to that job
  if KEYS[i] ~= "" and redis.call("GET", KEYS[i]) == ARGV[1] then
    redis.call("DEL", KEYS[i])
  end
end
if KEYS[6] ~= "" then
  redis.call("ZREM", KEYS[6], ARGV[1])
end
return {DEAD_OK}
