-- Records one call's result on an account's breaker: {0, 0} closed, {1, until_ms} open.
-- KEYS[1] the breaker, a hash: `state` (absent when closed, `open` or `half`), `until`,
-- `probes`, `open_ms`, `keep`, `issued`, `probe_at`; when closed, the rolling window as ten
-- slots `i<n>` (bucket index), `o<n>` (successes), `f<n>` (failures) and `w` (bucket_ms).
-- ARGV now_ms, success (1 or 0), bucket_ms, min_calls, failure_ratio, open_until_ms,
-- probes, open_ms, keep_ms, open_ttl_ms, span_ms. Mirrors memory.rs.
local key = KEYS[1]
local now = tonumber(ARGV[1])
local success = ARGV[2] == '1'

local function open()
  redis.call('DEL', key)
  redis.call('HSET', key, 'state', 'open', 'until', ARGV[6], 'probes', ARGV[7],
    'open_ms', ARGV[8], 'keep', ARGV[9])
  redis.call('PEXPIRE', key, ARGV[10])
  return {1, tonumber(ARGV[6])}
end

-- One read of everything: the state, then the window's width and its ten slots.
local fields = {'state', 'until', 'w'}
for n = 0, 9 do
  fields[#fields + 1] = 'i' .. n
  fields[#fields + 1] = 'o' .. n
  fields[#fields + 1] = 'f' .. n
end
local v = redis.call('HMGET', key, unpack(fields))
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

-- Closed: count the call in its bucket, then sum the buckets still in the window.
local width = tonumber(ARGV[3])
if tonumber(v[3]) ~= width then
  redis.call('DEL', key)
  redis.call('HSET', key, 'w', ARGV[3])
  v = {}
end
local bucket = math.floor(now / width)
local slot = bucket % 10
-- Slot n's fields are at 4 + 3n (bucket index), 5 + 3n (successes), 6 + 3n (failures).
local at = 4 + 3 * slot
local stored, ok, bad = tonumber(v[at]), tonumber(v[at + 1]) or 0, tonumber(v[at + 2]) or 0
-- A slot holding a later bucket (a worker whose clock is behind) is counted into as it is.
if stored == nil or stored < bucket then
  stored, ok, bad = bucket, 0, 0
end
if success then ok = ok + 1 else bad = bad + 1 end
redis.call('HSET', key, 'i' .. slot, string.format('%d', stored), 'o' .. slot,
  string.format('%d', ok), 'f' .. slot, string.format('%d', bad))
local calls, failed = 0, 0
for n = 0, 9 do
  local i, o, f = tonumber(v[4 + 3 * n]), tonumber(v[5 + 3 * n]), tonumber(v[6 + 3 * n])
  if n == slot then
    i, o, f = stored, ok, bad
  end
  if i and i > bucket - 10 then
    calls = calls + o + f
    failed = failed + f
  end
end
if not success and calls >= tonumber(ARGV[4]) and failed / calls >= tonumber(ARGV[5]) then
  return open()
end
redis.call('PEXPIRE', key, ARGV[11])
return {0, 0}
