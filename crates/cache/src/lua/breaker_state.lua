-- Asks whether a call may go to an account: {0, 0} closed, {1, until_ms} open, {2, 0} probe.
-- KEYS[1] the breaker (see record_result.lua); ARGV now_ms. Mirrors memory.rs.
local key = KEYS[1]
local now = tonumber(ARGV[1])
local v = redis.call('HMGET', key, 'state', 'until', 'probes', 'open_ms', 'keep', 'issued', 'probe_at')
if v[1] ~= 'open' and v[1] ~= 'half' then
  return {0, 0}
end
if v[1] == 'open' then
  local untl = tonumber(v[2])
  if now < untl then
    return {1, untl}
  end
  -- The open period is over: this caller is the first probe.
  redis.call('HSET', key, 'state', 'half', 'issued', 1, 'probe_at', ARGV[1])
  redis.call('PEXPIRE', key, v[5])
  return {2, 0}
end
local probes, open_ms = tonumber(v[3]), tonumber(v[4])
local issued, probe_at = tonumber(v[6]), tonumber(v[7])
if issued < probes then
  redis.call('HINCRBY', key, 'issued', 1)
elseif now >= probe_at + open_ms then
  -- No probe reported within a round: its worker is presumed dead.
  redis.call('HSET', key, 'issued', 1, 'probe_at', ARGV[1])
else
  return {1, probe_at + open_ms}
end
redis.call('PEXPIRE', key, v[5])
return {2, 0}
