-- Move a running job to its next state, only for the holder of the current lease.
-- KEYS[1] job hash, KEYS[2] failed index, KEYS[3] its ref entry's bucket or "", KEYS[4] its
-- idempotency entry's bucket or "", KEYS[5] due index, KEYS[6] its ticket's owner entry's
-- bucket or "", KEYS[7] the account's in-flight set or "" (the lease token leaves it: the
-- request is answered), KEYS[8] and KEYS[9] the job's batch (members, record) or "" (they
-- live ARGV[4] seconds more: a batch expires that long after the last move of any of its
-- jobs), KEYS[10] and KEYS[11] the account's wake signal and count of freed slots or ""
-- (a slot freed is counted for the deliveries waiting for one, and the first counted wakes
-- the longest waiting: see slots.lua), KEYS[12], KEYS[13], KEYS[14] the old keys of the
-- ref, idempotency and ticket entries (or ""), KEYS[15] the record of the job whose request
-- went out on this job's slot once this job's was answered, or "" (the slot passes to it)
-- ARGV[1] lease token, ARGV[2] new state, ARGV[3] now, ARGV[4] ttl seconds for a succeeded
-- job (0: keep), ARGV[5] job id, ARGV[6] when a retrying job is due (else ""),
-- ARGV[7] requests this delivery made that count as attempts, ARGV[8] "1": a retrying job
-- the rate limit handed back unsent (held back, waiting for its turn), else "",
-- ARGV[9] this delivery's requests of the job, one compact JSON line each, oldest first
-- (else ""), appended to the record's attempt_log, which keeps the last ARGV[10]; a job
-- that succeeded at its first request keeps none,
-- ARGV[11] the account cap (requests in flight per account; 0: none), ARGV[12] ms the count
-- and the signal live from the first slot counted, ARGV[13], ARGV[14], ARGV[15] the fields
-- of the ref, idempotency and ticket entries (or ""), ARGV[16] the lease token of the job
-- of KEYS[15] (or ""), ARGV[17] ms a slot's holder counts against its account at most,
-- ARGV[18..] field/value pairs to set; an empty value deletes the field.
-- Returns RECORDED_OK, or why the outcome was not recorded: RECORDED_MISSING,
-- RECORDED_LOST_LEASE, RECORDED_SUCCEEDED or RECORDED_FAILED (the job ended so meanwhile),
-- RECORDED_CANCEL_ASKED (recorded as retrying, but a person asked to cancel it while it was
-- in flight: its delivery cancels it now, with cancel.lua),
-- RECORDED_TAKEN (a succeeded job's ticket is already another job's: nothing is written,
-- the job stays running under its lease and its delivery goes on looking).
-- The job's slot passes to the job that went out on it after this one's answer, if that one
-- is still out (it took no slot of its own: see FOLLOWS in admit.lua); else it is free. The
-- follower gets its entry even if this job had none left: the job before this one on the
-- slot may not be recorded yet (its entry stands for the slot until then; when it is, it
-- finds this job recorded and frees it), so the set never holds fewer entries than
-- requests out.
local function passed_on(inflight)
  if KEYS[15] == "" then
    return false
  end
  local next_job = redis.call("HMGET", KEYS[15], "state", "lease_token")
  if next_job[1] ~= STATE_RUNNING or next_job[2] ~= ARGV[16] then
    return false  -- answered and recorded already: it has nothing to pass the slot to
  end
  local t = redis.call("TIME")
  local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call("ZADD", inflight, now_ms + tonumber(ARGV[17]), ARGV[16])
  return true
end

local held = KEYS[7] ~= "" and redis.call("ZREM", KEYS[7], ARGV[1]) == 1
local passed = KEYS[7] ~= "" and passed_on(KEYS[7])
if held and not passed and KEYS[10] ~= "" then
  -- A slot of the account came free: counted for the waiters (no more than the slots free
  -- now: others took the rest without waiting). The first one counted wakes the longest
  -- waiting delivery, which takes all it can use at once (slots.lua), so the slots a
  -- delivery's answers free together go out together again.
  -- The count lives ARGV[12] ms from its first slot (a waiter that took the signal and
  -- died before the count leaves no count that grows for ever with no signal).
  local before = tonumber(redis.call("GET", KEYS[11]) or "0")
  if before == 0 then
    redis.call("SET", KEYS[11], 1, "PX", tonumber(ARGV[12]))
    redis.call("LPUSH", KEYS[10], "1")
    redis.call("LTRIM", KEYS[10], 0, 0)
    redis.call("PEXPIRE", KEYS[10], tonumber(ARGV[12]))
  else
    local free = tonumber(ARGV[11]) - redis.call("ZCARD", KEYS[7])
    redis.call("SET", KEYS[11], math.max(math.min(before + 1, free), 1), "KEEPTTL")
  end
end
local current = redis.call("HMGET", KEYS[1], "state", "lease_token", "lane")
if not current[1] then
  return RECORDED_MISSING
end
if current[1] == STATE_SUCCEEDED then
  return RECORDED_SUCCEEDED
elseif current[1] == STATE_FAILED then
  return RECORDED_FAILED
end
if current[1] ~= STATE_RUNNING or current[2] ~= ARGV[1] then
  return RECORDED_LOST_LEASE
end
local job_id = ARGV[5]
-- Under either layout's names (lua/lib/records.lua): a record has the one or the other.
local succeeded_fields = {"state", "account_id", "lane", "ref", "idempotency_key", "batch_id",
  "attempts", "replays", "ticket_id", "remote_id", "created_at", "finished_at", "spec",
  "attempt_log", COMPACT.account_id, COMPACT.ref, COMPACT.idempotency_key, COMPACT.batch_id,
  COMPACT.created_at, part_name(true, 0)}  -- a body's first part is the 13th or the 20th
-- The ticket is claimed here, with the outcome, so that two jobs adopting one ticket at the
-- same instant cannot both have it; an owner whose record is gone still owns it until the
-- sweep drops its entry (never another job's ticket).
if ARGV[2] == STATE_SUCCEEDED and KEYS[6] ~= "" then
  local owner = index_named(KEYS[6], ARGV[15], KEYS[14])
  if owner and owner ~= job_id then
    return RECORDED_TAKEN
  end
  index_set(KEYS[6], ARGV[15], KEYS[14], job_id)
end
redis.call("HSET", KEYS[1], "state", ARGV[2], "updated_at", ARGV[3])
moved(KEYS[1], job_id, current[3], STATE_RUNNING, ARGV[2], ARGV[3])
if KEYS[8] ~= "" and tonumber(ARGV[4]) > 0 then
  redis.call("EXPIRE", KEYS[8], ARGV[4])
  redis.call("EXPIRE", KEYS[9], ARGV[4])
end
redis.call("HDEL", KEYS[1], "lease_until", "lease_token", "lost_attempts")
if ARGV[7] ~= "0" then
  redis.call("HINCRBY", KEYS[1], "attempts", tonumber(ARGV[7]))
end
for i = 18, #ARGV, 2 do
  if ARGV[i + 1] == "" then
    redis.call("HDEL", KEYS[1], ARGV[i])
  else
    redis.call("HSET", KEYS[1], ARGV[i], ARGV[i + 1])
  end
end
-- The job's last requests: this delivery's appended, the oldest dropped past ARGV[10]; a
-- ticket made at the first request keeps none (its ids and attempt count say all there is).
local log = redis.call("HGET", KEYS[1], "attempt_log")
local first_try = not log and not string.find(ARGV[9], "\n", 1, true)
if ARGV[9] ~= "" and not (ARGV[2] == STATE_SUCCEEDED and first_try) then
  local lines = {}
  for line in string.gmatch(log and (log .. "\n" .. ARGV[9]) or ARGV[9], "[^\n]+") do
    lines[#lines + 1] = line
  end
  local cap = tonumber(ARGV[10])
  local from = math.max(#lines - cap + 1, 1)
  redis.call("HSET", KEYS[1], "attempt_log", table.concat(lines, "\n", from))
end
if ARGV[2] == STATE_RETRYING then
  redis.call("HSET", KEYS[1], "next_attempt_at", ARGV[6])
  redis.call("ZADD", KEYS[5], ARGV[6], job_id)
  if ARGV[8] == "1" then
    held_back(KEYS[1], current[3])
  end
  if redis.call("HEXISTS", KEYS[1], "cancel_asked") == 1 then
    return RECORDED_CANCEL_ASKED
  end
  return RECORDED_OK
end
redis.call("ZREM", KEYS[5], job_id)
-- A final job no longer retries: a replay starts its retry budget afresh.
redis.call("HDEL", KEYS[1], "reconcile_first", "failing_since", "cancel_asked")
redis.call("HSET", KEYS[1], "finished_at", ARGV[3])
if ARGV[2] == STATE_FAILED then
  redis.call("ZADD", KEYS[2], ARGV[3], job_id)
  return RECORDED_OK
end
-- A succeeded record, kept for the retention period, is written afresh with what
-- correlation needs (ids, ref, batch, account, state, attempts, times; the body and the
-- attempt log only if the caller kept them): Redis keeps a hash in its compact encoding only
-- while it never held a long value, and the body it held until now had made it a table of
-- several times the bytes. Its updated_at is its finished_at; a lane unsaid is interactive.
local kept = redis.call("HMGET", KEYS[1], unpack(succeeded_fields))
-- A body kept is kept whole: its parts after the first (lua/lib/records.lua).
local parts, compact = {}, not kept[13] and kept[20] ~= false
while kept[13] or kept[20] do
  local part = redis.call("HGET", KEYS[1], part_name(compact, #parts + 1))
  if not part then
    break
  end
  parts[#parts + 1] = part
end
redis.call("DEL", KEYS[1])
local fields = {}
for i, name in ipairs(succeeded_fields) do
  if kept[i] and kept[i] ~= "" and not (name == "lane" and kept[i] == "interactive") then
    fields[#fields + 1] = name
    fields[#fields + 1] = kept[i]
  end
end
for i, part in ipairs(parts) do
  fields[#fields + 1] = part_name(compact, i)
  fields[#fields + 1] = part
end
hset_fields(KEYS[1], fields)
-- Indexes an earlier version kept as keys of their own move into their buckets; an entry
-- lives as long as its job (sweep.lua).
index_move(KEYS[3], ARGV[13], KEYS[12])
index_move(KEYS[4], ARGV[14], KEYS[13])
local ttl = tonumber(ARGV[4])
if ttl > 0 then
  redis.call("EXPIRE", KEYS[1], ttl)
end
return RECORDED_OK
