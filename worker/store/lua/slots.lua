-- Take the slots of an account freed for its waiters: at most ARGV[1] of them. A waiter takes
-- them first without waiting (a delivery whose own answers just freed them), and again once
-- BLPOP handed it the account's wake signal; any left are signalled to the next waiter, and
-- with none left no signal stays behind to wake one for nothing.
-- KEYS[1] the account's freed slots not yet taken (a count), KEYS[2] its wake signal (a list
-- of at most one element; see transition.lua)
-- ARGV[1] the most slots this waiter can use (its jobs held back by the cap), ARGV[2] ms the
-- count and the signal live after this
-- Returns the slots taken (0: none freed, or others took them meanwhile).
local freed = tonumber(redis.call("GET", KEYS[1]) or "0")
local taken = math.min(freed, tonumber(ARGV[1]))
if freed > taken then
  redis.call("SET", KEYS[1], freed - taken, "PX", tonumber(ARGV[2]))
  redis.call("LPUSH", KEYS[2], "1")
  redis.call("LTRIM", KEYS[2], 0, 0)
  redis.call("PEXPIRE", KEYS[2], tonumber(ARGV[2]))
else
  redis.call("DEL", KEYS[1], KEYS[2])
end
return taken
