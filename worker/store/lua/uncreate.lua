-- Take back jobs create.lua stored, newest first, when the rest of their batch could not be
-- stored: a batch is accepted whole or not at all. A job no longer queued (a worker claimed
-- it meanwhile) is left as it is. Only deletes until the first job is gone, so Redis runs it
-- even at maxmemory: noeviction refuses a command that may grow memory only as a script's
-- first write.
-- KEYS[1] due index, KEYS[2] batch (sorted set) or ""; then per job (as create.lua got them): job
-- hash, idempotency key or "", ref key or ""
-- ARGV per job: job id, the job its ref key named before or "", that key's TTL in ms
-- (negative: none), "1" if create.lua made it ("0": a row its idempotency key named an
-- existing job for, which create.lua put in the batch; it only leaves the batch)
-- Returns how many jobs were taken back.
local taken = 0
for n = 0, (#KEYS - 2) / 3 - 1 do
  local job, idem, ref = KEYS[3 + 3 * n], KEYS[4 + 3 * n], KEYS[5 + 3 * n]
  local job_id, previous, ttl = ARGV[1 + 4 * n], ARGV[2 + 4 * n], tonumber(ARGV[3 + 4 * n])
  if ARGV[4 + 4 * n] == "0" then
    if KEYS[2] ~= "" then
      redis.call("ZREM", KEYS[2], job_id)
    end
  elseif redis.call("HGET", job, "state") == STATE_QUEUED then
    local lane = redis.call("HGET", job, "lane")
    redis.call("DEL", job)
    moved(job, job_id, lane, STATE_QUEUED, nil, "0")
    redis.call("ZREM", KEYS[1], job_id)
    if KEYS[2] ~= "" then
      redis.call("ZREM", KEYS[2], job_id)
    end
    if idem ~= "" and redis.call("GET", idem) == job_id then
      redis.call("DEL", idem)
    end
    -- A ref key naming a newer job belongs to that job; else it names what it named before.
    if ref ~= "" and redis.call("GET", ref) == job_id then
      if previous == "" then
        redis.call("DEL", ref)
      elseif ttl > 0 then
        redis.call("SET", ref, previous, "PX", ttl)
      else
        redis.call("SET", ref, previous)
      end
    end
    taken = taken + 1
  end
end
return taken
