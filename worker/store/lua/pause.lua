-- Extend a pause to at least now + ARGV[1] ms (never shorten one already longer).
-- KEYS[1] pause key (value: until, ms since epoch by Redis's clock)
local t = redis.call("TIME")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local until_ms = now + tonumber(ARGV[1])
local current = tonumber(redis.call("GET", KEYS[1]) or "0")
if current < until_ms then
  redis.call("SET", KEYS[1], until_ms, "PX", tonumber(ARGV[1]) + 1000)
end
return until_ms
