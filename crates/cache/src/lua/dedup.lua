-- Marks a key for a window unless another owner marked it: {1, first_seen} for the first (or
-- the same owner again), {0, first_seen} for a duplicate.
-- KEYS[1] the mark; ARGV now_ms, until_ms, window_ms, owner.
-- The stored `until` decides, not the key's TTL, so callers control time; PEXPIRE only frees memory.
local v = redis.call('HMGET', KEYS[1], 'first', 'until', 'owner')
if v[1] and v[2] and tonumber(v[2]) > tonumber(ARGV[1]) then
  if v[3] == ARGV[4] then
    return {1, tonumber(v[1])}
  end
  return {0, tonumber(v[1])}
end
redis.call('HSET', KEYS[1], 'first', ARGV[1], 'until', ARGV[2], 'owner', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {1, tonumber(ARGV[1])}
