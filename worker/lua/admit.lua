-- Admit one request to StackOne, or say how long to wait: a GCRA rate limit per API key,
-- a cap on requests in flight per linked account, and pauses (429s, a refused key).
-- KEYS[1] schedule of the API key (its GCRA theoretical arrival time, microseconds),
-- KEYS[2] pause of the key (429), KEYS[3] in-flight set of the account (sorted set:
-- holder -> expiry ms), KEYS[4] pause of the account (the provider's 429), KEYS[5] pause of
-- the key after StackOne refused it (401/403); pauses hold their end in ms; KEYS[6] the
-- refusal not yet cleared by a success, KEYS[7] the probe lock
-- ARGV[1] emission interval in microseconds, ARGV[2] burst tolerance in microseconds for
-- this lane, ARGV[3] account cap (0: none), ARGV[4] holder id, ARGV[5] holder lease ms,
-- ARGV[6] ms between probes of a refused key
-- Returns {0, 0} when admitted, {0, 6} when admitted as the probe of a refused key (the
-- holder then counts against the account cap until released), or {wait_us, reason} with
-- reason 1 rate, 2 key paused, 3 account paused, 4 account at its cap, 5 key refused.
local t = redis.call("TIME")
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now_us / 1000)
local pauses = {{KEYS[5], 5}, {KEYS[2], 2}, {KEYS[4], 3}}
for _, pause in ipairs(pauses) do
  local until_ms = tonumber(redis.call("GET", pause[1]) or "0")
  if until_ms > now_ms then
    return {(until_ms - now_ms) * 1000, pause[2]}
  end
end
local cap = tonumber(ARGV[3])
if cap > 0 then
  redis.call("ZREMRANGEBYSCORE", KEYS[3], "-inf", now_ms)
  if redis.call("ZCARD", KEYS[3]) >= cap then
    local first = redis.call("ZRANGE", KEYS[3], 0, 0, "WITHSCORES")
    return {math.max(math.min(tonumber(first[2]) - now_ms, 1000), 5) * 1000, 4}
  end
end
local interval = tonumber(ARGV[1])
local tat = math.max(tonumber(redis.call("GET", KEYS[1]) or "0"), now_us)
local allow_at = tat - tonumber(ARGV[2])
if allow_at > now_us then
  return {math.ceil(allow_at - now_us), 1}
end
-- After a refusal's pause, one request probes the key; the rest wait for its answer.
local probe = 0
if redis.call("EXISTS", KEYS[6]) == 1 then
  if not redis.call("SET", KEYS[7], ARGV[4], "NX", "PX", tonumber(ARGV[6])) then
    return {math.max(redis.call("PTTL", KEYS[7]), 1) * 1000, 5}
  end
  probe = 6
end
redis.call("SET", KEYS[1], string.format("%.0f", tat + interval),
  "PX", math.floor((tat + interval - now_us) / 1000) + 60000)
if cap > 0 then
  redis.call("ZADD", KEYS[3], now_ms + tonumber(ARGV[5]), ARGV[4])
  redis.call("PEXPIRE", KEYS[3], tonumber(ARGV[5]) + 60000)
end
return {0, probe}
