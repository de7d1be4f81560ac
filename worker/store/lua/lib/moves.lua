-- The fleet's numbers (worker/store/stats.py), kept by every script that moves a job, in
-- the same atomic step as the move, so a snapshot reads a few keys instead of every record:
-- COUNTS_KEY "<lane>:<state>": jobs queued, running and retrying now, failed ones kept (dead
--   letters), and "<lane>:held_back": retrying jobs the rate limit handed back unsent
--   (their record says held_back until they leave retrying);
-- QUEUED_PREFIX .. lane: its queued job ids by when they became queued;
-- MINUTE_PREFIX .. (Unix time // 60): jobs finished in that minute ("<lane>:<state>") and
--   requests sent in each of its seconds ("sent:<second>"), kept MINUTE_TTL seconds.

local function in_minute(seconds, field, by)
  local key = MINUTE_PREFIX .. string.format("%d", math.floor(seconds / 60))
  redis.call("HINCRBY", key, field, by)
  redis.call("EXPIRE", key, MINUTE_TTL)
end

-- Requests admitted to StackOne at ``now_us`` (Redis's clock, microseconds): sent now.
local function sent(now_us, count)
  local seconds = math.floor(now_us / 1000000)
  in_minute(seconds, "sent:" .. string.format("%d", seconds % 60), count)
end

local function counted(state)
  return state == STATE_QUEUED or state == STATE_RUNNING or state == STATE_RETRYING
    or state == STATE_FAILED
end

-- The job ``job_id`` (its hash ``job``) of ``lane`` went from state ``from`` to ``to`` at
-- ``now`` (Unix seconds, as the script was given it); nil ``from``: it was just created,
-- nil ``to``: it was deleted. Call it after the move, once per move.
local function moved(job, job_id, lane, from, to, now)
  lane = lane or "interactive"
  if from == to then
    return
  end
  if from and counted(from) then
    redis.call("HINCRBY", COUNTS_KEY, lane .. ":" .. from, -1)
  end
  if to and counted(to) then
    redis.call("HINCRBY", COUNTS_KEY, lane .. ":" .. to, 1)
  end
  if from == STATE_QUEUED then
    redis.call("ZREM", QUEUED_PREFIX .. lane, job_id)
  elseif to == STATE_QUEUED then
    redis.call("ZADD", QUEUED_PREFIX .. lane, now, job_id)
  end
  if from == STATE_RETRYING and redis.call("HDEL", job, "held_back") == 1 then
    redis.call("HINCRBY", COUNTS_KEY, lane .. ":held_back", -1)
  end
  if to and is_final(to) then
    in_minute(tonumber(now), lane .. ":" .. to, 1)
  end
end

-- The retrying job ``job`` (just moved there) waits for its turn under the rate limit, unsent.
local function held_back(job, lane)
  redis.call("HSET", job, "held_back", "1")
  redis.call("HINCRBY", COUNTS_KEY, (lane or "interactive") .. ":held_back", 1)
end
