-- Admit one request to StackOne, or say how long to wait: a GCRA rate limit per API key,
-- a cap on requests in flight per linked account, and pauses a 429 asked for.
-- KEYS[1] schedule of the API key (its GCRA theoretical arrival time), KEYS[2] pause of the
-- key, KEYS[3] in-flight set of the account (sorted set: holder -> expiry), KEYS[4] pause
-- of the account
-- ARGV[1] emission interval ms (one request per interval), ARGV[2] burst tolerance ms for
-- this lane, ARGV[3] account cap (0: none), ARGV[4] holder id, ARGV[5] holder lease ms
-- Returns {0, 0} when admitted (the holder then counts against the account cap until
-- released), or {wait_ms, reason} with reason 1 rate, 2 key paused, 3 account paused,
-- 4 account at its cap.
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local key_pause = tonumber(redis.call("GET", KEYS[2]) or "0")
if key_pause > now then
  return {key_pause - now, 2}
end
local account_pause = tonumber(redis.call("GET", KEYS[4]) or "0")
if account_pause > now then
  return {account_pause - now, 3}
end
local cap = tonumber(ARGV[3])
if cap > 0 then
  redis.call("ZREMRANGEBYSCORE", KEYS[3], "-inf", now)
  if redis.call("ZCARD", KEYS[3]) >= cap then
    local first = redis.call("ZRANGE", KEYS[3], 0, 0, "WITHSCORES")
    return {math.max(math.min(tonumber(first[2]) - now, 1000), 5), 4}
  end
end
local interval = tonumber(ARGV[1])
local tat = math.max(tonumber(redis.call("GET", KEYS[1]) or "0"), now)
local allow_at = tat - tonumber(ARGV[2])
if allow_at > now then
  return {allow_at - now, 1}
end
redis.call("SET", KEYS[1], tat + interval, "PX", math.floor(tat + interval - now) + 60000)
if cap > 0 then
  redis.call("ZADD", KEYS[3], now + tonumber(ARGV[5]), ARGV[4])
  redis.call("PEXPIRE", KEYS[3], tonumber(ARGV[5]) + 60000)
end
return {0, 0}
