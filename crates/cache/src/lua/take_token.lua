-- Takes a token from a bucket refilled on each call: {1, 0} taken, or {0, retry_after_ms}.
-- KEYS[1] the bucket; ARGV now_ms, rate_per_sec, burst, max_ttl_ms.
-- Mirrors memory.rs step for step, in the same doubles, so both answer alike.
local now = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local v = redis.call('HMGET', KEYS[1], 'tokens', 'last')
local tokens, last = burst, now
if v[1] and v[2] then
  tokens, last = tonumber(v[1]), tonumber(v[2])
  -- A worker whose clock is behind refills nothing and moves nothing back.
  if now > last then
    tokens = tokens + (now - last) * rate / 1000
    last = now
  end
  tokens = math.min(burst, tokens)
end
local taken, wait = 0, 0
if tokens >= 1 then
  tokens = tokens - 1
  taken = 1
else
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
-- Once full, the bucket equals a missing one, so it may expire then.
local ttl = math.max(1, math.min(math.ceil((burst - tokens) * 1000 / rate), tonumber(ARGV[4])))
-- %.17g keeps the double exact; Redis would otherwise print 14 digits.
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'last', string.format('%d', last))
redis.call('PEXPIRE', KEYS[1], string.format('%d', ttl))
return {taken, wait}
