-- Take back jobs create.lua stored, newest first, when the rest of their batch could not be
-- stored: a batch is accepted whole or not at all. A job no longer queued (a worker claimed
-- it meanwhile) is left as it is. Only deletes until the first job is gone, so Redis runs it
-- even at maxmemory: noeviction refuses a command that may grow memory only as a script's
-- first write.
-- KEYS[1] due index, KEYS[2] batch (sorted set) or ""; then per job (as create.lua got them): job
-- hash, its idempotency entry's bucket and old key (or "", ""), its ref entry's bucket and
-- old key (or "", "")
-- ARGV per job: job id, the job its ref named before or "", "1" if create.lua made it ("0":
-- a row its idempotency key named an existing job for, which create.lua put in the batch;
-- it only leaves the batch), its idempotency entry's field or "", its ref entry's field or ""
-- Returns how many jobs were taken back.
local taken = 0
for n = 0, (#KEYS - 2) / 5 - 1 do
  local job, idem, idem_old = KEYS[3 + 5 * n], KEYS[4 + 5 * n], KEYS[5 + 5 * n]
  local ref, ref_old = KEYS[6 + 5 * n], KEYS[7 + 5 * n]
  local job_id, previous, made = ARGV[1 + 5 * n], ARGV[2 + 5 * n], ARGV[3 + 5 * n]
  local idem_field, ref_field = ARGV[4 + 5 * n], ARGV[5 + 5 * n]
  if made == "0" then
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
    if idem ~= "" then
      index_drop(idem, idem_field, idem_old, job_id)
    end
    -- A ref naming a newer job belongs to that job; else it names what it named before.
    if ref ~= "" and redis.call("HGET", ref, ref_field) == job_id then
      if previous == "" then
        redis.call("HDEL", ref, ref_field)
      else
        redis.call("HSET", ref, ref_field, previous)
      end
    end
    taken = taken + 1
  end
end
return taken
