-- Deletes a shared value if it still holds ARGV[1]; stored as "{expires_at_ms}:{value}".
-- KEYS[1] the value. Returns 1 when deleted.
local stored = redis.call('GET', KEYS[1])
if not stored then
  return 0
end
local colon = string.find(stored, ':', 1, true)
if colon and string.sub(stored, colon + 1) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
