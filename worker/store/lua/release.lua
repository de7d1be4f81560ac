-- Let jobs out of the key's lines at the key's rate, for the scheduler to send: the
-- interactive line first, then bulk, each in fair-share tag order (admit.lua gives the
-- tags), as many as the key's schedule has moments for within the lookahead, an account
-- with a rate of its own no faster than that rate. Nothing is released while the key is
-- paused (a 429, a refusal's or an outage's pause); once a refused key or an outage waits
-- for its probe, one job at a time, while no probe is out, so that one can be the probe
-- (were none let out, a line holding every job would wait for a probe that never came). A released job is made due now,
-- so the scheduler hands it out next, and is given its turn: its admission passes the line
-- once (admit.lua takes the turn when it admits or reserves it). Only a job already handed
-- back (retrying) is let out: one whose delivery has not yet recorded its handback stays
-- for the next release (else that record would put its due time back to the line's
-- safety bound), and one gone or final leaves the line.
-- KEYS[1] interactive line, KEYS[2] bulk line (sorted sets, "job|account" -> tag),
-- KEYS[3] shares (hash: "<lane>|v" each line's virtual time, "pace:<account>" when the
-- account may next be released, µs), KEYS[4] turns (job -> ms released), KEYS[5] the
-- release pace (µs), KEYS[6] the key's schedule (µs), KEYS[7] the due index, KEYS[8] pause
-- of the key, KEYS[9] pause after a refusal, KEYS[10] the refusal, KEYS[11] the outage,
-- KEYS[12] the refusal's probe lock, KEYS[13] the outage's probe lock
-- ARGV[1] the key's interval (µs), ARGV[2] lookahead (µs), ARGV[3] most jobs to release,
-- ARGV[4] an account's own interval (µs; 0: none), ARGV[5] now as the due index keeps it,
-- ARGV[6] the job key prefix
-- Returns the number of jobs released.
local t = redis.call("TIME")
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now_us / 1000)
local turn_kept_ms = 600000  -- a turn its job never came back for (it ended otherwise)
local scan_factor = 4  -- entries looked at per release: past those not ready, gone or paced

local function number(value)
  return string.format("%.17g", value)
end

local function later(key)
  return tonumber(redis.call("GET", key) or "0") > now_ms
end

local outage_until = tonumber(redis.call("HGET", KEYS[11], "until") or "0")
if later(KEYS[8]) or later(KEYS[9]) or outage_until > now_ms then
  return 0
end
local probing = redis.call("EXISTS", KEYS[10], KEYS[11]) > 0
if probing and redis.call("EXISTS", KEYS[12], KEYS[13]) > 0 then
  return 0  -- a probe is out: its answer decides
end
local interval, horizon = tonumber(ARGV[1]), now_us + tonumber(ARGV[2])
local account_interval = tonumber(ARGV[4])
local pace = math.max(tonumber(redis.call("GET", KEYS[5]) or "0"),
  tonumber(redis.call("GET", KEYS[6]) or "0"), now_us)
local most = math.min(tonumber(ARGV[3]), math.floor((horizon - pace) / interval) + 1)
if probing then
  most = math.min(most, 1)
end
if most <= 0 then
  return 0
end
redis.call("ZREMRANGEBYSCORE", KEYS[4], "-inf", now_ms - turn_kept_ms)
local released = 0

-- Whether the account may have one more job released now (its own rate, if any).
local function paced(account)
  if account_interval <= 0 then
    return true
  end
  local field = "pace:" .. account
  local at = math.max(tonumber(redis.call("HGET", KEYS[3], field) or "0"), now_us)
  if at > horizon then
    return false
  end
  redis.call("HSET", KEYS[3], field, number(at + account_interval))
  return true
end

local function release(line, lane)
  local v = tonumber(redis.call("HGET", KEYS[3], lane .. "|v") or "0")
  local scan = scan_factor * (most - released)
  if scan <= 0 then
    return
  end
  local entries = redis.call("ZRANGE", line, 0, scan - 1, "WITHSCORES")
  for j = 1, #entries, 2 do
    if released >= most then
      break
    end
    local member, tag = entries[j], tonumber(entries[j + 1])
    local bar = string.find(member, "|", 1, true)
    local job, account = string.sub(member, 1, bar - 1), string.sub(member, bar + 1)
    local state = redis.call("HGET", ARGV[6] .. job, "state")
    if not state or is_final(state) then
      redis.call("ZREM", line, member)
    elseif state == STATE_RETRYING and paced(account) then
      redis.call("ZREM", line, member)
      redis.call("ZADD", KEYS[4], now_ms, job)
      redis.call("ZADD", KEYS[7], ARGV[5], job)
      v = math.max(v, tag)
      released = released + 1
    end
  end
  redis.call("HSET", KEYS[3], lane .. "|v", number(v))
end

release(KEYS[1], "interactive")
release(KEYS[2], "bulk")
if released > 0 then
  pace = pace + released * interval
  redis.call("SET", KEYS[5], number(pace), "PX", math.floor((pace - now_us) / 1000) + 60000)
end
return released
