-- Frees a lock if the owner holds it. KEYS[1] the lock; ARGV owner.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
