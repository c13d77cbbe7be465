-- Read a counter: its spent and its live reserved units.
-- KEYS: the counter hash and its holds zset.
-- Returns {spent, reserved} as decimal strings.
local counter, holds = KEYS[1], KEYS[2]
expire_holds(counter, holds, now_ms())
local state = redis.call('HMGET', counter, 'spent', 'reserved')
return {state[1] or '0', state[2] or '0'}  -- strings: exact beyond 2^53
