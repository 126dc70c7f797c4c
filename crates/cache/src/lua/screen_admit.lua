-- The checks of a message (screen.lua) and then, only when it passes and an account is named,
-- the checks before a call to that account (admit.lua): the first account a message would go
-- through is asked in the same round trip as the message's own checks.
-- KEYS[1..2] screen's keys; KEYS[3..5] admit's ('' as KEYS[3]: no account to ask).
-- ARGV[1..8] screen's arguments; ARGV[9..12] admit's.
-- {screen's answer, its value, admit's answer, its value}; admit's answer is -1 when admit was
-- not asked (the message was stopped, or no account was named).
-- screen and admit are the scripts of those names, wrapped as functions.
local screened = screen({KEYS[1], KEYS[2]},
  {ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8]})
if screened.err then
  return screened
end
if screened[1] ~= 0 or KEYS[3] == '' then
  return {screened[1], screened[2], -1, 0}
end
local admitted = admit({KEYS[3], KEYS[4], KEYS[5]}, {ARGV[9], ARGV[10], ARGV[11], ARGV[12]})
if admitted.err then
  return admitted
end
return {0, 0, admitted[1], admitted[2]}
