-- A job record's layouts (worker/store/keys.py, COMPACT_FIELDS), in the prelude of the
-- scripts that read or write a record's own fields and body: create.lua writes a record
-- compactly, the versions before wrote full names; every reader takes either. COMPACT maps
-- each full name to its compact one; SPEC_FIELDS names the spec's fields a record keeps on
-- their own (keys.py).

-- ``text`` in parts of at most 64 bytes, in order: Redis keeps a hash in its compact
-- encoding only while every value is at most hash-max-listpack-value (64 by default)
-- bytes, and one long value made a queued record a table of three times its body's bytes.
-- A part never ends inside a UTF-8 character, so each reads as text on its own.
local function parts_of(text)
  local parts, from = {}, 1
  while from <= #text do
    local to = math.min(from + 63, #text)
    while to < #text and to > from and text:byte(to + 1) >= 128 and text:byte(to + 1) < 192 do
      to = to - 1
    end
    parts[#parts + 1] = string.sub(text, from, to)
    from = to + 1
  end
  return parts
end

-- The name of the ``n``-th part (from 0) of a body: "0", "1", ... in a compact record;
-- "spec", "spec:1", "spec:2", ... in a full one (the spec as JSON).
local function part_name(compact, n)
  if compact then
    return tostring(n)
  end
  return n == 0 and "spec" or ("spec:" .. n)
end

-- The body of record ``job`` whole (its parts joined, until the first one missing; "" if
-- none).
local function joined_parts(job, compact)
  local parts = {}
  while true do
    local part = redis.call("HGET", job, part_name(compact, #parts))
    if not part then
      return table.concat(parts)
    end
    parts[#parts + 1] = part
  end
end

-- Append ``text``'s parts, each under its name, to ``fields`` (a flat name/value list).
local function add_parts(fields, text, compact)
  for n, part in ipairs(parts_of(text)) do
    fields[#fields + 1] = part_name(compact, n - 1)
    fields[#fields + 1] = part
  end
  return fields
end

-- HSET ``fields`` (a flat name/value list) on record ``job``, in slices: one Lua call takes
-- at most about 8,000 values, and a body of 256 KiB is 4,096 parts (a name and a value each).
local function hset_fields(job, fields)
  for from = 1, #fields, 1000 do
    redis.call("HSET", job, unpack(fields, from, math.min(from + 999, #fields)))
  end
end
