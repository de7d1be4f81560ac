-- Admit a round of requests to StackOne, in order, or say how long each must wait: a GCRA
-- rate limit per API key, a cap on requests in flight per linked account, and pauses (429s,
-- a refused key). The first refusal that holds for the whole key (rate, a pause of the key,
-- a refused key) ends the round: every request after it gets the same answer unasked, so a
-- saturated limit costs one evaluation per round, not one per waiting request.
-- KEYS[1] schedule of the key (GCRA theoretical arrival time, microseconds), KEYS[2] pause
-- of the key (429), KEYS[3] pause after StackOne refused the key (401/403), KEYS[4] the
-- refusal not yet cleared by a success, KEYS[5] the probe lock; then per request i:
-- KEYS[4 + 2i] in-flight set of its account (holder -> expiry ms), KEYS[5 + 2i] pause of
-- its account (the provider's 429). Pauses hold their end in ms.
-- ARGV[1] emission interval in microseconds, ARGV[2] account cap (0: none), ARGV[3] holder
-- lease ms, ARGV[4] ms between probes of a refused key; then per request i: ARGV[3 + 2i]
-- burst tolerance in microseconds for its lane, ARGV[4 + 2i] holder id.
-- Returns per request {wait_us, reason}: reason 0 admitted, 6 admitted as the probe of a
-- refused key (an admitted holder counts against its account's cap until released),
-- 1 rate, 2 key paused, 3 account paused, 4 account at its cap, 5 key refused.
local t = redis.call("TIME")
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now_us / 1000)
local interval = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local lease_ms = tonumber(ARGV[3])
local n = (#ARGV - 4) / 2
local out = {}

local function paused(key)
  local until_ms = tonumber(redis.call("GET", key) or "0")
  if until_ms > now_ms then
    return (until_ms - now_ms) * 1000
  end
  return nil
end

local function admit(i)
  local inflight, account_pause = KEYS[4 + 2 * i], KEYS[5 + 2 * i]
  local burst, holder = tonumber(ARGV[3 + 2 * i]), ARGV[4 + 2 * i]
  local wait = paused(KEYS[3])
  if wait then return wait, 5, true end
  wait = paused(KEYS[2])
  if wait then return wait, 2, true end
  wait = paused(account_pause)
  if wait then return wait, 3, false end
  if cap > 0 then
    redis.call("ZREMRANGEBYSCORE", inflight, "-inf", now_ms)
    if redis.call("ZCARD", inflight) >= cap then
      local first = redis.call("ZRANGE", inflight, 0, 0, "WITHSCORES")
      return math.max(math.min(tonumber(first[2]) - now_ms, 1000), 5) * 1000, 4, false
    end
  end
  local tat = math.max(tonumber(redis.call("GET", KEYS[1]) or "0"), now_us)
  local allow_at = tat - burst
  if allow_at > now_us then
    return math.ceil(allow_at - now_us), 1, true
  end
  -- After a refusal's pause, one request probes the key; the rest wait for its answer.
  local probe = 0
  if redis.call("EXISTS", KEYS[4]) == 1 then
    if not redis.call("SET", KEYS[5], holder, "NX", "PX", tonumber(ARGV[4])) then
      return math.max(redis.call("PTTL", KEYS[5]), 1) * 1000, 5, true
    end
    probe = 6
  end
  redis.call("SET", KEYS[1], string.format("%.0f", tat + interval),
    "PX", math.floor((tat + interval - now_us) / 1000) + 60000)
  if cap > 0 then
    redis.call("ZADD", inflight, now_ms + lease_ms, holder)
    redis.call("PEXPIRE", inflight, lease_ms + 60000)
  end
  return 0, probe, false
end

local stop_wait, stop_reason = nil, nil
for i = 1, n do
  if stop_reason then
    out[#out + 1] = stop_wait
    out[#out + 1] = stop_reason
  else
    local wait, reason, for_all = admit(i)
    out[#out + 1] = wait
    out[#out + 1] = reason
    if for_all then
      stop_wait, stop_reason = wait, reason
    end
  end
end
return out
