-- Hand the scheduler the jobs whose time has come: retries now due, jobs whose worker was
-- lost (lease expired), and queued jobs that nobody claimed in time (their message was
-- never sent, or was lost between the queue and a worker). A queued job whose lane still
-- has messages waiting is given more time instead: its message is most likely among them,
-- and a long bulk import must not fill the queue with copies. Once the lane drains, a job
-- still unclaimed is sent again.
-- KEYS[1] due index, KEYS[2] interactive queue, KEYS[3] bulk queue; ARGV[1] now,
-- ARGV[2] when to look again, ARGV[3] most jobs to return, ARGV[4] job key prefix
-- Returns a flat list {job_id, lane, job_id, lane, ...} to send to the queue.
local ids = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[1], "LIMIT", 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  local key = ARGV[4] .. id
  local job = redis.call("HMGET", key, "state", "lane")
  local queue = KEYS[2]
  if job[2] == "bulk" then
    queue = KEYS[3]
  end
  if not job[1] or is_final(job[1]) then
    redis.call("ZREM", KEYS[1], id)
  elseif job[1] == STATE_QUEUED and redis.call("LLEN", queue) > 0 then
    redis.call("ZADD", KEYS[1], ARGV[2], id)
  else
    if job[1] == STATE_RETRYING then
      redis.call("HSET", key, "state", STATE_QUEUED, "updated_at", ARGV[1])
      redis.call("HDEL", key, "next_attempt_at")
      moved(key, id, job[2], STATE_RETRYING, STATE_QUEUED, ARGV[1])
    end
    redis.call("ZADD", KEYS[1], ARGV[2], id)
    out[#out + 1] = id
    out[#out + 1] = job[2] or "interactive"
  end
end
return out
