-- Create job records, each atomically with its indexes; many per call, because a bulk
-- import pays for every argument it sends.
-- KEYS[1] due index, KEYS[2] batch (sorted set) or ""; then per job: job hash, its
-- idempotency entry's bucket and old key (or "", ""), its ref entry's bucket and old key
-- (or "", "")
-- ARGV[1] when to send a job again if its message is never confirmed sent, ARGV[2] now,
-- ARGV[3] lane, ARGV[4] batch id or "", ARGV[5] seconds the batch lives unless a job of it
-- moves (0: for good); then per job: job id, account id, its body (the ticket as JSON), ref
-- or "", idempotency key or "", its row's position in the batch's input, its idempotency
-- entry's field or "", its ref entry's field or ""
-- A row whose idempotency key names a job already is that job's row in this batch too,
-- unless the job is in the batch already: it keeps the row that made it (or joined first).
-- Returns per job {job_id, 1, the job its ref named before or ""} when created (uncreate.lua
-- takes it back with these), {existing_job_id, 0, 1 if this row put it in the batch else 0}
-- when its idempotency key was seen before (also earlier in this same call).
-- A record is written compactly (lua/lib/records.lua), in one HSET: its fields under their
-- COMPACT names, which it keeps for life (every reader takes either layout's names), and its
-- body (the ticket as JSON: the spec's other fields are fields of their own) in parts "0",
-- "1", ... (claim.lua joins them). Fields a job does not need yet are not stored: a lane is
-- interactive unless it says, attempts are 0 and updated_at is created_at until they are
-- written.
local function record_fields(account, body, now, lane, idem_value, ref_value)
  local fields = {"state", STATE_QUEUED, COMPACT.account_id, account, COMPACT.created_at, now}
  if lane ~= "interactive" then
    fields[#fields + 1], fields[#fields + 2] = "lane", lane
  end
  if idem_value ~= "" then
    fields[#fields + 1], fields[#fields + 2] = COMPACT.idempotency_key, idem_value
  end
  if ref_value ~= "" then
    fields[#fields + 1], fields[#fields + 2] = COMPACT.ref, ref_value
  end
  if ARGV[4] ~= "" then
    fields[#fields + 1], fields[#fields + 2] = COMPACT.batch_id, ARGV[4]
  end
  return add_parts(fields, body, true)
end

local resend_at, now, lane = ARGV[1], ARGV[2], ARGV[3]
local answers = {}
for n = 0, (#KEYS - 2) / 5 - 1 do
  local job, idem, idem_old = KEYS[3 + 5 * n], KEYS[4 + 5 * n], KEYS[5 + 5 * n]
  local ref, ref_old = KEYS[6 + 5 * n], KEYS[7 + 5 * n]
  local job_id, account, body = ARGV[6 + 8 * n], ARGV[7 + 8 * n], ARGV[8 + 8 * n]
  local ref_value, idem_value, position = ARGV[9 + 8 * n], ARGV[10 + 8 * n], ARGV[11 + 8 * n]
  local idem_field, ref_field = ARGV[12 + 8 * n], ARGV[13 + 8 * n]
  local existing = idem ~= "" and index_get(idem, idem_field, idem_old)
  if existing then
    local joined = 0
    if KEYS[2] ~= "" then
      joined = redis.call("ZADD", KEYS[2], "NX", position, existing)
    end
    answers[#answers + 1] = {existing, 0, joined}
  else
    hset_fields(job, record_fields(account, body, now, lane, idem_value, ref_value))
    if idem ~= "" then
      index_set(idem, idem_field, idem_old, job_id)
    end
    local previous_ref = ""
    if ref ~= "" then
      previous_ref = index_get(ref, ref_field, ref_old) or ""
      index_set(ref, ref_field, ref_old, job_id)
    end
    if KEYS[2] ~= "" then
      redis.call("ZADD", KEYS[2], position, job_id)
    end
    -- The outbox: until the producer confirms the message went out, the scheduler sends it.
    redis.call("ZADD", KEYS[1], resend_at, job_id)
    moved(job, job_id, lane, nil, STATE_QUEUED, now)
    answers[#answers + 1] = {job_id, 1, previous_ref}
  end
end
if KEYS[2] ~= "" and tonumber(ARGV[5]) > 0 then
  redis.call("EXPIRE", KEYS[2], ARGV[5])
end
return answers
