-- Marks a key for a window unless it is marked: {1, now} for the first, {0, first_seen}.
-- KEYS[1] the mark; ARGV now_ms, until_ms, window_ms.
-- The stored `until` decides, not the key's TTL, so callers control time; PEXPIRE only frees memory.
local v = redis.call('HMGET', KEYS[1], 'first', 'until')
if v[1] and v[2] and tonumber(v[2]) > tonumber(ARGV[1]) then
  return {0, tonumber(v[1])}
end
redis.call('HSET', KEYS[1], 'first', ARGV[1], 'until', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {1, tonumber(ARGV[1])}
