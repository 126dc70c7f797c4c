-- The checks before a call to an account, in one round trip and in this order: its pause, a
-- token from its bucket (when it has a rate limit), its breaker. The first that says wait is
-- the answer, and the checks after it are not made: a paused account spends no token, and an
-- account out of tokens is not handed a probe.
-- KEYS[1] the pause, KEYS[2] the bucket, KEYS[3] the breaker; ARGV now_ms, rate_per_sec (''
-- without a rate limit), burst, max_ttl_ms.
-- {0, 0} go ahead, {0, 1} go ahead as a probe, {1, until_ms} paused, {2, retry_after_ms} no
-- token, {3, until_ms} breaker open.
-- take_token and breaker_state are the scripts of those names, wrapped as functions.
local now = tonumber(ARGV[1])
local paused = redis.call('GET', KEYS[1])
if paused then
  local untl = tonumber(paused)
  if not untl then
    return redis.error_reply('corrupt pause end ' .. paused)
  end
  if untl > now then
    return {1, untl}
  end
end
if ARGV[2] ~= '' then
  local token = take_token({KEYS[2]}, {ARGV[1], ARGV[2], ARGV[3], ARGV[4]})
  if token[1] == 0 then
    return {2, token[2]}
  end
end
local breaker = breaker_state({KEYS[3]}, {ARGV[1]})
if breaker[1] == 1 then
  return {3, breaker[2]}
end
return {0, breaker[1] == 2 and 1 or 0}
