-- Counts one use by an owner if fewer than the limit were counted this period: {1, count} or
-- {0, count}. An owner already counted this period is allowed again without counting.
-- KEYS[1] the counter; ARGV now_ms, limit, period_end_ms, ttl_ms (period_end_ms - now_ms), owner.
-- A counter whose period has ended counts as zero, whatever its TTL says.
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local owner = 'o:' .. ARGV[5]
local v = redis.call('HMGET', KEYS[1], 'count', 'end')
local count = 0
if v[1] and v[2] and tonumber(v[2]) > now then
  count = tonumber(v[1])
end
if count > 0 and redis.call('HEXISTS', KEYS[1], owner) == 1 then
  return {1, count}
end
if count >= limit then
  return {0, count}
end
if count == 0 then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'count', 1, 'end', ARGV[3], owner, 1)
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return {1, 1}
end
redis.call('HSET', KEYS[1], owner, 1)
return {1, redis.call('HINCRBY', KEYS[1], 'count', 1)}
