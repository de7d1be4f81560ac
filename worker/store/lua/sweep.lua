-- Sweep index buckets: drop the entries naming a job whose record is gone (expired with
-- TICKETQ_SUCCEEDED_TTL, or purged), so an index lives as long as the jobs it names.
-- KEYS the buckets to sweep (hashes, keys.py: index_bucket)
-- ARGV none
-- Returns how many entries were dropped.
local dropped = 0
for _, bucket in ipairs(KEYS) do
  local entries = redis.call("HGETALL", bucket)
  for i = 1, #entries, 2 do
    if not live(entries[i + 1]) then
      redis.call("HDEL", bucket, entries[i])
      dropped = dropped + 1
    end
  end
end
return dropped
