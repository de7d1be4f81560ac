-- Create a job record atomically with its indexes.
-- KEYS[1] job hash, KEYS[2] idempotency key or "", KEYS[3] ref key or "", KEYS[4] batch set
-- or "", KEYS[5] due index
-- ARGV[1] job id, ARGV[2] when to send it again if its message is never confirmed sent,
-- ARGV[3..] field/value pairs for the job hash
-- Returns {job_id, 1} when created, {existing_job_id, 0} when the idempotency key was seen.
if KEYS[2] ~= "" then
  local existing = redis.call("GET", KEYS[2])
  if existing then
    return {existing, 0}
  end
  redis.call("SET", KEYS[2], ARGV[1])
end
local fields = {}
for i = 3, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
redis.call("HSET", KEYS[1], unpack(fields))
if KEYS[3] ~= "" then
  redis.call("SET", KEYS[3], ARGV[1])
end
if KEYS[4] ~= "" then
  redis.call("SADD", KEYS[4], ARGV[1])
end
-- The outbox: until the producer confirms the message went out, the scheduler will send it.
redis.call("ZADD", KEYS[5], ARGV[2], ARGV[1])
return {ARGV[1], 1}
