-- The job indexes (worker/store/keys.py, IndexEntry), in the prelude of every script that
-- reads or writes them: an entry is a field of a bucket (a small hash) naming a job; the
-- versions before the buckets kept it as a key of its own (``old``, "" if none to look at),
-- read when the field is absent and moved into the bucket when its job moves. An entry
-- naming a job whose record is gone (expired, purged) is no entry: sweep.lua drops it.

-- Whether ``job_id`` (or nil/false) names a job whose record exists.
local function live(job_id)
  return job_id and redis.call("EXISTS", JOB_PREFIX .. job_id) == 1
end

-- The job an entry names, or false, whether or not its record is still there.
local function index_named(bucket, field, old)
  local job_id = redis.call("HGET", bucket, field)
  if not job_id and old ~= "" then
    job_id = redis.call("GET", old)
  end
  return job_id
end

-- The job an entry names, or false (also if the job is gone).
local function index_get(bucket, field, old)
  local job_id = index_named(bucket, field, old)
  if live(job_id) then
    return job_id
  end
  return false
end

-- The entry names ``job_id`` from now on (in its bucket; the old key, if any, is gone).
local function index_set(bucket, field, old, job_id)
  redis.call("HSET", bucket, field, job_id)
  if old ~= "" then
    redis.call("DEL", old)
  end
end

-- The entry, if it names ``job_id``, names nothing any more.
local function index_drop(bucket, field, old, job_id)
  if redis.call("HGET", bucket, field) == job_id then
    redis.call("HDEL", bucket, field)
  end
  if old ~= "" and redis.call("GET", old) == job_id then
    redis.call("DEL", old)
  end
end

-- An entry an earlier version kept as a key of its own moves into its bucket, unless the
-- bucket names a live job already (a newer one: it was written since).
local function index_move(bucket, field, old)
  if old == "" then
    return
  end
  local job_id = redis.call("GET", old)
  if job_id then
    if not live(redis.call("HGET", bucket, field)) then
      redis.call("HSET", bucket, field, job_id)
    end
    redis.call("DEL", old)
  end
end
