-- Records one call's result on an account's breaker: {0, 0} closed, {1, until_ms} open.
-- KEYS[1] the breaker, a hash: `state` (absent when closed, `open` or `half`), `until`,
-- `probes`, `open_ms`, `keep`, `issued`, `probe_at`; when closed, the rolling window as ten
-- slots `i<n>` (bucket index), `o<n>` (successes), `f<n>` (failures) and `w` (bucket_ms).
-- ARGV now_ms, success (1 or 0), bucket_ms, min_calls, failure_ratio, open_until_ms,
-- probes, open_ms, keep_ms, open_ttl_ms, span_ms, calls (that many calls with this result;
-- a worker reports its successes together). Mirrors memory.rs.
local key = KEYS[1]
local now = tonumber(ARGV[1])
local success = ARGV[2] == '1'
local n = tonumber(ARGV[12]) or 1
local width = tonumber(ARGV[3])
local bucket = math.floor(now / width)
local slot = bucket % 10
local si, so, sf = 'i' .. slot, 'o' .. slot, 'f' .. slot

local function open()
  redis.call('DEL', key)
  redis.call('HSET', key, 'state', 'open', 'until', ARGV[6], 'probes', ARGV[7],
    'open_ms', ARGV[8], 'keep', ARGV[9])
  redis.call('PEXPIRE', key, ARGV[10])
  return {1, tonumber(ARGV[6])}
end

-- The state, the window's width and this call's slot. The other slots are read only when a
-- failure may open the breaker: reading all of them on every call took most of its time.
local v = redis.call('HMGET', key, 'state', 'until', 'w', si, so, sf)
if v[1] == 'open' and now < tonumber(v[2]) then
  -- A call made before the breaker opened: its result changes nothing.
  return {1, tonumber(v[2])}
end
if v[1] == 'open' or v[1] == 'half' then
  if success then
    redis.call('DEL', key)
    return {0, 0}
  end
  return open()
end

-- Closed: count the call in its bucket.
if tonumber(v[3]) ~= width then
  redis.call('DEL', key)
  redis.call('HSET', key, 'w', ARGV[3])
  v = {}
end
local stored, ok, bad = tonumber(v[4]), tonumber(v[5]) or 0, tonumber(v[6]) or 0
-- A slot holding a later bucket (a worker whose clock is behind) is counted into as it is.
if stored == nil or stored < bucket then
  stored, ok, bad = bucket, 0, 0
end
if success then ok = ok + n else bad = bad + n end
redis.call('HSET', key, si, string.format('%d', stored), so, string.format('%d', ok), sf,
  string.format('%d', bad))
if not success then
  -- Sum the buckets still in the window, this one as just written. The names are written out:
  -- building them in a loop cost more than the rest of the script.
  local w = redis.call('HMGET', key, 'i0', 'o0', 'f0', 'i1', 'o1', 'f1', 'i2', 'o2', 'f2',
    'i3', 'o3', 'f3', 'i4', 'o4', 'f4', 'i5', 'o5', 'f5', 'i6', 'o6', 'f6', 'i7', 'o7', 'f7',
    'i8', 'o8', 'f8', 'i9', 'o9', 'f9')
  local calls, failed = 0, 0
  for n = 0, 9 do
    local i, o, f = tonumber(w[1 + 3 * n]), tonumber(w[2 + 3 * n]), tonumber(w[3 + 3 * n])
    if i and i > bucket - 10 then
      calls = calls + o + f
      failed = failed + f
    end
  end
  if calls >= tonumber(ARGV[4]) and failed / calls >= tonumber(ARGV[5]) then
    return open()
  end
end
redis.call('PEXPIRE', key, ARGV[11])
return {0, 0}
