-- Admit a round of requests to StackOne, in order, or say how long each must wait: a GCRA
-- rate limit per API key, a cap on requests in flight per linked account, and pauses (429s,
-- a refused key, an outage). The first refusal that holds for the whole key (rate, a pause
-- of the key, a refused key, an outage) ends the round: every request after it gets that
-- answer unasked (for the rate, each one interval later than the one before it), so a
-- saturated limit costs one evaluation per round, not one per waiting request.
-- Bulk requests the rate holds back longer than their delivery may wait are given a place
-- in the key's bulk line instead: each one interval behind the last, so a saturated
-- import's jobs come back one at a time, when their turn comes, rather than all asking
-- again every second.
-- KEYS[1] schedule of the key (GCRA theoretical arrival time, microseconds), KEYS[2] pause
-- of the key (429), KEYS[3] pause after StackOne refused the key (401/403), KEYS[4] the
-- refusal not yet cleared by a success, KEYS[5] the probe lock, KEYS[6] the end of the bulk
-- line (microseconds), KEYS[7] the outage (hash: "until" ms, "step" ms; exists until a
-- success ends it), KEYS[8] the outage's probe lock; then per request i: KEYS[7 + 2i]
-- in-flight set of its account (holder -> expiry ms), KEYS[8 + 2i] pause of its account
-- (the provider's 429). Pauses hold their end in ms.
-- ARGV[1] emission interval in microseconds, ARGV[2] account cap (0: none), ARGV[3] holder
-- lease ms, ARGV[4] ms between probes of a refused key, ARGV[5] microseconds a bulk
-- request may wait in its delivery; then per request i: ARGV[3 + 3i] burst tolerance in
-- microseconds for its lane, ARGV[4 + 3i] holder id, ARGV[5 + 3i] "1" if it is bulk.
-- Returns per request {wait_us, reason}: REASON_ADMITTED, REASON_PROBE (admitted as the
-- probe of a refused key or of an outage whose pause is over; an admitted holder counts
-- against its account's cap until released), REASON_RATE, REASON_KEY_PAUSED,
-- REASON_ACCOUNT_PAUSED, REASON_ACCOUNT_BUSY (the account is at its cap),
-- REASON_KEY_REFUSED, REASON_OUTAGE (StackOne is failing: the outage's pause, or another
-- request is probing; then at most one step of the outage's backoff).
-- The requests admitted are counted as sent in the minute's hash (lua/lib/moves.lua).
local t = redis.call("TIME")
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now_us / 1000)
local interval = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local lease_ms = tonumber(ARGV[3])
local hold = tonumber(ARGV[5])
local n = (#ARGV - 5) / 3
local out = {}
local sending = 0  -- requests admitted this round

-- The wait of a request the rate holds back: its own, if it may wait that long in its
-- delivery; else (bulk) its place at the end of the line, which then moves one interval on.
local function in_line(i, wait)
  if ARGV[5 + 3 * i] ~= "1" or wait <= hold then
    return wait
  end
  local tail = tonumber(redis.call("GET", KEYS[6]) or "0")
  local turn = math.max(tail, now_us + wait)
  redis.call("SET", KEYS[6], string.format("%.0f", turn + interval),
    "PX", math.floor((turn + interval - now_us) / 1000) + 1000)
  return math.ceil(turn - now_us)
end

local function paused(key)
  local until_ms = tonumber(redis.call("GET", key) or "0")
  if until_ms > now_ms then
    return (until_ms - now_ms) * 1000
  end
  return nil
end

local function admit(i)
  local inflight, account_pause = KEYS[7 + 2 * i], KEYS[8 + 2 * i]
  local burst, holder = tonumber(ARGV[3 + 3 * i]), ARGV[4 + 3 * i]
  local wait = paused(KEYS[3])
  if wait then return wait, REASON_KEY_REFUSED, true end
  wait = paused(KEYS[2])
  if wait then return wait, REASON_KEY_PAUSED, true end
  local outage_until = redis.call("HGET", KEYS[7], "until")  -- false: no outage
  if outage_until and tonumber(outage_until) > now_ms then
    return (tonumber(outage_until) - now_ms) * 1000, REASON_OUTAGE, true
  end
  wait = paused(account_pause)
  if wait then return wait, REASON_ACCOUNT_PAUSED, false end
  if cap > 0 then
    redis.call("ZREMRANGEBYSCORE", inflight, "-inf", now_ms)
    if redis.call("ZCARD", inflight) >= cap then
      local first = redis.call("ZRANGE", inflight, 0, 0, "WITHSCORES")
      local wait_ms = math.max(math.min(tonumber(first[2]) - now_ms, 1000), 5)
      return wait_ms * 1000, REASON_ACCOUNT_BUSY, false
    end
  end
  local tat = math.max(tonumber(redis.call("GET", KEYS[1]) or "0"), now_us)
  local allow_at = tat - burst
  if allow_at > now_us then
    return allow_at - now_us, REASON_RATE, true
  end
  -- After a refusal's pause, one request probes the key; the rest wait for its answer.
  local admitted = REASON_ADMITTED
  if redis.call("EXISTS", KEYS[4]) == 1 then
    if not redis.call("SET", KEYS[5], holder, "NX", "PX", tonumber(ARGV[4])) then
      return math.max(redis.call("PTTL", KEYS[5]), 1) * 1000, REASON_KEY_REFUSED, true
    end
    admitted = REASON_PROBE
  elseif outage_until then
    -- The outage's pause is over: one request tests StackOne, the rest wait for its answer.
    if not redis.call("SET", KEYS[8], holder, "NX", "PX", lease_ms) then
      local step = tonumber(redis.call("HGET", KEYS[7], "step") or "1000")
      return math.max(math.min(redis.call("PTTL", KEYS[8]), step), 1) * 1000, REASON_OUTAGE, true
    end
    admitted = REASON_PROBE
  end
  redis.call("SET", KEYS[1], string.format("%.0f", tat + interval),
    "PX", math.floor((tat + interval - now_us) / 1000) + 60000)
  if cap > 0 then
    redis.call("ZADD", inflight, now_ms + lease_ms, holder)
    redis.call("PEXPIRE", inflight, lease_ms + 60000)
  end
  return 0, admitted, false
end

local stop_wait, stop_reason = nil, nil
for i = 1, n do
  local wait, reason
  if stop_reason then
    -- Behind a rate refusal, each request waits one interval after the one before it, so
    -- a waiting batch asks again one request at a time instead of all at once.
    if stop_reason == REASON_RATE then
      stop_wait = stop_wait + interval
    end
    wait, reason = stop_wait, stop_reason
  else
    local for_all
    wait, reason, for_all = admit(i)
    if for_all then
      stop_wait, stop_reason = wait, reason
    end
  end
  if reason == REASON_RATE then
    wait = in_line(i, wait)
  end
  out[#out + 1] = math.ceil(wait)
  out[#out + 1] = reason
  if reason == REASON_ADMITTED or reason == REASON_PROBE then
    sending = sending + 1
  end
end
if sending > 0 then
  sent(now_us, sending)  -- each admitted request goes out now: the rate limit's use
end
return out
