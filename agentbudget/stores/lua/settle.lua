-- Settle a reservation: drop its holds and add the actual amounts to spent, once.
-- KEYS: the reservation record; in 'record' mode also each charge's counter and holds.
-- ARGV: hold id, retention ms, grace ms, mode ('settle', 'release' or 'record'), m, then
--       m actual amounts; in 'record' mode then m ttl ms (-1: never expires).
-- A settle whose window's counter already expired recreates it for the grace period:
-- the spend lands in the window the reservation was made in.
-- Returns {1} when applied, {0} when already settled or nothing to do, {-1} when the
-- id is unknown and the amounts are not all zero, {-2, n} when m is not the record's n.
local record = KEYS[1]
local hold_id = ARGV[1]
local retention_ms = tonumber(ARGV[2])
local grace_ms = tonumber(ARGV[3])
local mode = ARGV[4]
local m = tonumber(ARGV[5])
local now = now_ms()

local state = redis.call('HGET', record, 'state')
if state == 'settled' then
  return {0}
end

local counters, holds, expiries, actual = {}, {}, {}, {}
if state then
  local n = tonumber(redis.call('HGET', record, 'n'))
  if mode ~= 'release' and m ~= n then
    return {-2, n}
  end
  for i = 1, n do
    local entry = redis.call('HMGET', record, 'c' .. i, 'h' .. i, 'x' .. i)
    counters[i], holds[i], expiries[i] = entry[1], entry[2], tonumber(entry[3])
    actual[i] = (mode == 'release') and '0' or ARGV[5 + i]
  end
elseif mode == 'record' then
  for i = 1, m do
    counters[i], holds[i] = KEYS[2 * i], KEYS[2 * i + 1]
    actual[i] = ARGV[5 + i]
    local ttl = tonumber(ARGV[5 + m + i])
    expiries[i] = (ttl >= 0) and (now + ttl) or -1
  end
else
  for i = 1, m do
    if tonumber(ARGV[5 + i]) ~= 0 then
      return {-1}
    end
  end
  return {0}
end

local field = 'r:' .. hold_id
for i = 1, #counters do
  local counter = counters[i]
  local amount = redis.call('HGET', counter, field)
  if amount then
    if amount ~= '0' then
      redis.call('HINCRBY', counter, 'reserved', '-' .. amount)
    end
    redis.call('HDEL', counter, field)
    redis.call('ZREM', holds[i], hold_id)
  end
  if tonumber(actual[i]) > 0 then
    local existed = redis.call('EXISTS', counter) == 1
    redis.call('HINCRBY', counter, 'spent', actual[i])
    if not existed and expiries[i] >= 0 then
      redis.call('PEXPIREAT', counter, int(math.max(expiries[i], now + grace_ms)))
    end
  end
end
redis.call('DEL', record)
redis.call('HSET', record, 'state', 'settled')
redis.call('PEXPIRE', record, int(retention_ms))
return {1}
