-- Takes a lock for an owner unless another owner holds it; re-taking one's own extends it.
-- KEYS[1] the lock; ARGV owner, ttl_ms. Returns 1 when the owner holds the lock, else 0.
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
