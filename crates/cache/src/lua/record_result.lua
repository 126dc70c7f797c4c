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

local state = redis.call('HMGET', key, 'state', 'until')
if state[1] == 'open' and now < tonumber(state[2]) then
  -- A call made before the breaker opened: its result changes nothing.
  return {1, tonumber(state[2])}
end
if state[1] == 'open' or state[1] == 'half' then
  if success then
    redis.call('DEL', key)
    return {0, 0}
  end
  return open()
end

-- Closed: count the call in its bucket, then sum the buckets still in the window.
local width = tonumber(ARGV[3])
if tonumber(redis.call('HGET', key, 'w')) ~= width then
  redis.call('DEL', key)
  redis.call('HSET', key, 'w', ARGV[3])
end
local bucket = math.floor(now / width)
local slot = bucket % 10
local stored = tonumber(redis.call('HGET', key, 'i' .. slot))
-- A slot holding a later bucket (a worker whose clock is behind) is counted into as it is.
if stored == nil or stored < bucket then
  redis.call('HSET', key, 'i' .. slot, string.format('%d', bucket), 'o' .. slot, 0, 'f' .. slot, 0)
end
redis.call('HINCRBY', key, (success and 'o' or 'f') .. slot, 1)
local calls, failed = 0, 0
for n = 0, 9 do
  local s = redis.call('HMGET', key, 'i' .. n, 'o' .. n, 'f' .. n)
  if s[1] and tonumber(s[1]) > bucket - 10 then
    calls = calls + tonumber(s[2]) + tonumber(s[3])
    failed = failed + tonumber(s[3])
  end
end
if not success and calls >= tonumber(ARGV[4]) and failed / calls >= tonumber(ARGV[5]) then
  return open()
end
redis.call('PEXPIRE', key, ARGV[11])
return {0, 0}
