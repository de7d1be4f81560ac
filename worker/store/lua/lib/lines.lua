-- An API key's fair lines (admit.lua, and claim.lua, which lines a fresh job up before
-- claiming it while its lane's line holds anyone): start-time fair queueing. A job's tag is
-- the later of its line's virtual time and its account's last tag, and the account's next
-- tag is 1/weight further.
local LINE_SLACK_US = 60000000  -- beyond its estimated turn, before a lined job comes back
local LINE_KEPT_MS = 86400000

-- The job joins the line of ``lane`` (``lines``: {interactive = key, bulk = key}; ``shares``
-- the hash of the lines' virtual times and the accounts' last tags) behind its account's
-- last request there. Returns how long (µs) it may wait before it is due again by itself:
-- twice its estimated turn at one job a ``pace_us``, and a minute.
local function join_line(lines, shares, lane, account, weight, job, pace_us)
  local line = lines[lane]
  local v = tonumber(redis.call("HGET", shares, lane .. "|v") or "0")
  local field = lane .. ":" .. account
  local tag = math.max(v, tonumber(redis.call("HGET", shares, field) or "0"))
  redis.call("HSET", shares, field, string.format("%.17g", tag + 1 / weight))
  redis.call("ZADD", line, string.format("%.17g", tag), job .. "|" .. account)
  local waiting = redis.call("ZCARD", lines.interactive) + redis.call("ZCARD", lines.bulk)
  local estimate = 2 * waiting * pace_us + LINE_SLACK_US
  local kept = math.max(LINE_KEPT_MS, math.floor(estimate / 1000))
  redis.call("PEXPIRE", shares, kept)
  redis.call("PEXPIRE", line, kept)
  return estimate
end
