-- Pauses an account until ARGV[1] unless a longer pause is in force; returns the pause's end.
-- KEYS[1] the pause; ARGV until_ms, ttl_ms (until_ms - now_ms, positive).
local current = tonumber(redis.call('GET', KEYS[1]))
if current and current >= tonumber(ARGV[1]) then
  return current
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return tonumber(ARGV[1])
