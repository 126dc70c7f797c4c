-- The checks of a message before any account is asked, in one round trip and in this order:
-- its dedup mark, then its use of the frequency cap. A duplicate is not counted.
-- KEYS[1] the dedup mark ('' for none), KEYS[2] the counter ('' for none); ARGV now_ms,
-- until_ms, window_ms, dedup owner, limit, period_end_ms, ttl_ms, frequency owner.
-- {0, 0} pass, {1, first_seen_ms} duplicate, {2, count} the cap is reached.
-- dedup and frequency are the scripts of those names, wrapped as functions.
if KEYS[1] ~= '' then
  local mark = dedup({KEYS[1]}, {ARGV[1], ARGV[2], ARGV[3], ARGV[4]})
  if mark[1] == 0 then
    return {1, mark[2]}
  end
end
if KEYS[2] ~= '' then
  local use = frequency({KEYS[2]}, {ARGV[1], ARGV[5], ARGV[6], ARGV[7], ARGV[8]})
  if use[1] == 0 then
    return {2, use[2]}
  end
end
return {0, 0}
