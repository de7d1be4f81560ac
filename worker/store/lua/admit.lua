-- Admit a round of requests to StackOne, in order, or say how long each must wait: a GCRA
-- rate per API key (and, if set, per linked account), fair lines between accounts, a cap
-- on requests in flight per account, and pauses (429s, a refused key, an outage).
-- A request the rate holds back no longer than it may wait in its delivery is given its
-- moment at once (RESERVED: the schedule counts it; at the moment it asks once more, for
-- its account's slot only, so waiting for the limit costs no polling). One held back longer joins its lane's line,
-- ordered by start-time fair queueing: its tag is the later of the line's virtual time and
-- its account's last tag, and the account's next tag is 1/weight further; so while
-- several accounts wait, each gets the key's rate in proportion to its weight, and one
-- alone gets all of it. While a lane's line holds anyone, every new request of that lane
-- joins it too; release.lua (the scheduler) lets jobs out of the lines at the key's rate,
-- and a released job's turn lets it past the line once.
-- A request its account's cap holds back may follow one of the account's requests on its
-- slot (FOLLOWS): one admitted earlier in the round, or one its caller has out already. The
-- rate counts it as usual, and the caller sends it once that request is answered (never
-- before its moment), so a freed slot carries the next job at once, without a round trip;
-- it takes no slot of its own (the slot passes to it as the request before it is recorded:
-- transition.lua). At most ARGV[8] follow each such slot.
-- A refusal that holds for the whole key (a pause of the key, a refused key, an outage)
-- ends the round: every request after it gets that answer unasked.
-- KEYS[1] schedule of the key (GCRA theoretical arrival time, µs), KEYS[2] pause of the key
-- (429), KEYS[3] pause after StackOne refused the key (401/403), KEYS[4] the refusal not yet
-- cleared by a success, KEYS[5] the refusal's probe lock, KEYS[6] the outage (hash: "until"
-- ms, "step" ms; exists until a success ends it), KEYS[7] the outage's probe lock, KEYS[8]
-- the interactive line and KEYS[9] the bulk line (sorted sets, "job|account" -> tag),
-- KEYS[10] shares (hash: "<lane>|v" the line's virtual time, "<lane>:<account>" the
-- account's next tag), KEYS[11] turns (job -> ms released), KEYS[12] the interactive
-- lane's own schedule (µs: its burst counts from it, so jumping the moments bulk reserved
-- never takes more than the burst); then per request i: KEYS[10 + 3i] in-flight set of its
-- account (holder -> expiry ms), KEYS[11 + 3i] pause of its account (the provider's 429),
-- KEYS[12 + 3i] its account's own schedule (µs).
-- Pauses hold their end in ms.
-- ARGV[1] the key's emission interval (µs), ARGV[2] account cap (0: none), ARGV[3] holder
-- lease ms, ARGV[4] ms between probes of a refused key, ARGV[5] an account's own interval
-- (µs; 0: none), ARGV[6] how far ahead of an account's schedule it may go (µs), ARGV[7]
-- how far ahead of its own schedule the interactive lane may go (µs), ARGV[8] how many
-- requests may follow each slot admitted in this round (0: none); then per request i,
-- from a = 8 + 10 (i - 1): ARGV[a + 1] how far ahead of the key's schedule its
-- lane may go (µs), ARGV[a + 2] holder id, ARGV[a + 3] lane, ARGV[a + 4] job id,
-- ARGV[a + 5] account id, ARGV[a + 6] the account's weight, ARGV[a + 7] how long it may
-- wait for its moment (µs), ARGV[a + 8] how long if it passes the line (µs: it was let out,
-- or let past earlier in its delivery), ARGV[a + 9] its standing: STANDING_FRESH,
-- STANDING_PASSED (let past the line earlier in its delivery, its moment lapsed: it passes
-- again) or STANDING_MOMENT (its reserved moment has come: only pauses, a probe and the cap
-- apply; the rate counted it when it was reserved), ARGV[a + 10] how many of its account's
-- slots its caller holds with requests out (followers may follow them too).
-- Returns per request {wait_us, reason}: REASON_ADMITTED, REASON_PROBE (admitted as the
-- probe of a refused key or of an outage whose pause is over), REASON_RESERVED (go in
-- wait_us, asking then as STANDING_MOMENT), REASON_LINE (joined its lane's line: wait_us is how long until it is
-- due again by itself, should no release come first), REASON_KEY_PAUSED,
-- REASON_ACCOUNT_PAUSED, REASON_ACCOUNT_BUSY (the account is at its cap), REASON_FOLLOWS
-- (it goes on the slot of a request admitted earlier in the round, once that one is
-- answered and no sooner than wait_us from now),
-- REASON_KEY_REFUSED, REASON_OUTAGE (StackOne is failing: the outage's pause, or another
-- request is probing; then at most one step of the outage's backoff). An admitted holder
-- counts against its account's cap until released; a reserved one from its moment.
-- The requests admitted are counted as sent in their minute's hash (lua/lib/moves.lua).
local t = redis.call("TIME")
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now_us / 1000)
local interval = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local lease_ms = tonumber(ARGV[3])
local account_interval = tonumber(ARGV[5])
local account_ahead = tonumber(ARGV[6])
local interactive_burst = tonumber(ARGV[7])
local follow_per_slot = tonumber(ARGV[8])
local fixed_keys, fixed_args, per_keys, per_args = 12, 8, 3, 10
local n = (#ARGV - fixed_args) / per_args
local out = {}
local sending = 0  -- requests admitted this round, to go now
local slots_taken, following = {}, {}  -- per account, this round: slots held, followers

local function number(text)
  return string.format("%.17g", text)
end

local function paused(key)
  local until_ms = tonumber(redis.call("GET", key) or "0")
  if until_ms > now_ms then
    return (until_ms - now_ms) * 1000
  end
  return nil
end

local function line_of(lane)
  if lane == "bulk" then
    return KEYS[9]
  end
  return KEYS[8]
end

-- The job joins its lane's line (lua/lib/lines.lua); returns how long it may wait before it
-- is due again by itself.
local function join(lane, account, weight, job)
  local lines = {interactive = KEYS[8], bulk = KEYS[9]}
  return join_line(lines, KEYS[10], lane, account, weight, job, math.max(interval, account_interval))
end

-- A refused key or an outage whose pause is over: one request probes, the rest wait.
local function probing(holder, refused, outage_until)
  if refused then
    if not redis.call("SET", KEYS[5], holder, "NX", "PX", tonumber(ARGV[4])) then
      return math.max(redis.call("PTTL", KEYS[5]), 1) * 1000, REASON_KEY_REFUSED
    end
  elseif outage_until then
    if not redis.call("SET", KEYS[7], holder, "NX", "PX", lease_ms) then
      local step = tonumber(redis.call("HGET", KEYS[6], "step") or "1000")
      return math.max(math.min(redis.call("PTTL", KEYS[7]), step), 1) * 1000, REASON_OUTAGE
    end
  end
  return 0, REASON_PROBE
end

-- When the schedules let the request go: the key's, and its account's if it has one.
local function moment(ahead)
  local tat = math.max(tonumber(redis.call("GET", KEYS[1]) or "0"), now_us)
  return math.max(tat - ahead, now_us), tat
end

-- The account is at its cap: how long until its first holder's lease ends (at most 1 s).
local function busy(inflight)
  if cap <= 0 then
    return nil
  end
  redis.call("ZREMRANGEBYSCORE", inflight, "-inf", now_ms)
  if redis.call("ZCARD", inflight) < cap then
    return nil
  end
  local first = redis.call("ZRANGE", inflight, 0, 0, "WITHSCORES")
  return math.max(math.min(tonumber(first[2]) - now_ms, 1000), 5) * 1000
end

local function hold_slot(inflight, holder, account)
  if cap > 0 then
    redis.call("ZADD", inflight, now_ms + lease_ms, holder)
    redis.call("PEXPIRE", inflight, lease_ms + 60000)
    slots_taken[account] = (slots_taken[account] or 0) + 1
  end
end

-- The account is at its cap: may the request follow one of its slots taken this round, or
-- held by its caller?
local function may_follow(account, held)
  local followers = following[account] or 0
  if followers >= ((slots_taken[account] or 0) + held) * follow_per_slot then
    return false
  end
  following[account] = followers + 1
  return true
end

local function admit(i)
  local k, a = fixed_keys + per_keys * (i - 1), fixed_args + per_args * (i - 1)
  local inflight, account_pause, account_schedule = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  local ahead, holder, lane = tonumber(ARGV[a + 1]), ARGV[a + 2], ARGV[a + 3]
  local job, account, weight = ARGV[a + 4], ARGV[a + 5], tonumber(ARGV[a + 6])
  local hold, standing, held = tonumber(ARGV[a + 7]), ARGV[a + 9], tonumber(ARGV[a + 10])
  local wait = paused(KEYS[3])
  if wait then return wait, REASON_KEY_REFUSED, true end
  wait = paused(KEYS[2])
  if wait then return wait, REASON_KEY_PAUSED, true end
  local outage_until = redis.call("HGET", KEYS[6], "until")  -- false: no outage
  if outage_until and tonumber(outage_until) > now_ms then
    return (tonumber(outage_until) - now_ms) * 1000, REASON_OUTAGE, true
  end
  wait = paused(account_pause)
  if wait then return wait, REASON_ACCOUNT_PAUSED, false end
  local refused = redis.call("EXISTS", KEYS[4]) == 1
  local probing_now = refused or outage_until
  if standing == STANDING_MOMENT and not probing_now then
    -- Its moment, reserved earlier, has come: the rate counted it then; only the cap is left.
    wait = busy(inflight)
    if wait and may_follow(account, held) then return 0, REASON_FOLLOWS, false end
    if wait then return wait, REASON_ACCOUNT_BUSY, false end
    hold_slot(inflight, holder, account)
    return 0, REASON_ADMITTED, false
  end
  local released = redis.call("ZSCORE", KEYS[11], job)
  if released or standing ~= STANDING_FRESH then
    hold = tonumber(ARGV[a + 8])
  elseif redis.call("ZCARD", line_of(lane)) > 0 then
    return join(lane, account, weight, job), REASON_LINE, false
  end
  local follows = false
  wait = busy(inflight)
  if wait then
    -- A probe goes alone: nothing follows while the key or StackOne is in doubt.
    follows = not probing_now and may_follow(account, held)
    if not follows then return wait, REASON_ACCOUNT_BUSY, false end
  end
  local at, tat = moment(ahead)
  local lane_tat = nil
  if lane ~= "bulk" then
    lane_tat = math.max(tonumber(redis.call("GET", KEYS[12]) or "0"), now_us)
    at = math.max(at, lane_tat - interactive_burst)
  end
  local account_tat = nil
  if account_interval > 0 then
    account_tat = math.max(tonumber(redis.call("GET", account_schedule) or "0"), now_us)
    at = math.max(at, account_tat - account_ahead)
  end
  if at - now_us > hold then
    if follows then following[account] = following[account] - 1 end
    return join(lane, account, weight, job), REASON_LINE, false
  end
  local admitted = REASON_ADMITTED
  if at > now_us then
    admitted = REASON_RESERVED
  end
  if probing_now then
    if at > now_us then
      -- The probe goes first and alone; nobody reserves a moment behind it.
      return at - now_us, refused and REASON_KEY_REFUSED or REASON_OUTAGE, true
    end
    local probe_wait, probe = probing(holder, refused, outage_until)
    if probe ~= REASON_PROBE then return probe_wait, probe, true end
    admitted = REASON_PROBE
  end
  local next_tat = math.max(tat, at) + interval
  redis.call("SET", KEYS[1], number(next_tat), "PX", math.floor((next_tat - now_us) / 1000) + 60000)
  if lane_tat then
    local next_lane = math.max(lane_tat, at) + interval
    redis.call("SET", KEYS[12], number(next_lane), "PX", math.floor((next_lane - now_us) / 1000) + 60000)
  end
  if account_tat then
    local next_account = math.max(account_tat, at) + account_interval
    redis.call("SET", account_schedule, number(next_account),
      "PX", math.floor((next_account - now_us) / 1000) + 60000)
  end
  if released then
    redis.call("ZREM", KEYS[11], job)
  end
  if follows then
    sent(at, 1)  -- on a slot already held: it goes once that slot's request is answered
    return at - now_us, REASON_FOLLOWS, false
  end
  if admitted == REASON_RESERVED then
    sent(at, 1)  -- the cap is taken at its moment, when it asks again
  else
    hold_slot(inflight, holder, account)
    sending = sending + 1
  end
  return at - now_us, admitted, false
end

local stop_wait, stop_reason = nil, nil
for i = 1, n do
  local wait, reason
  if stop_reason then
    wait, reason = stop_wait, stop_reason
  else
    local for_all
    wait, reason, for_all = admit(i)
    if for_all then
      stop_wait, stop_reason = wait, reason
    end
  end
  out[#out + 1] = math.ceil(wait)
  out[#out + 1] = reason
end
if sending > 0 then
  sent(now_us, sending)  -- each admitted request goes out now: the rate limit's use
end
return out
