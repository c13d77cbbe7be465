-- Read a counter: its spent and its live reserved units.
-- KEYS: the counter hash and its holds zset.
-- Returns {spent, reserved}.
local counter, holds = KEYS[1], KEYS[2]
expire_holds(counter, holds, now_ms())
local state = redis.call('HMGET', counter, 'spent', 'reserved')
return {tonumber(state[1]) or 0, tonumber(state[2]) or 0}
