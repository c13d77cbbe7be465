-- Reserve an amount in every counter, or in none of them.
-- KEYS: the reservation record, then for each charge its counter hash and holds zset.
-- ARGV: hold id, lease ms, retention ms, grace ms, then for each charge: limit, amount,
--       ttl ms (-1: the counter never expires), window start ms and end ms (-1: none).
-- A charge with a window is checked against the server's clock: when TIME is outside
-- it, nothing is reserved. Its counter then expires at the window's end plus grace.
-- Returns {1} when held, {0, index, available (a decimal string)} when refused, {-1}
-- when the id was used, {-3, now ms} when the server's clock is outside a charge's
-- window. Amounts are compared exactly (common.lua big_*), not as doubles.
local record = KEYS[1]
local hold_id = ARGV[1]
local lease_ms = tonumber(ARGV[2])
local retention_ms = tonumber(ARGV[3])
local grace_ms = tonumber(ARGV[4])
local n = (#KEYS - 1) / 2
local now = now_ms()

local function arg(i, field)
  return ARGV[4 + 5 * (i - 1) + field]
end

for i = 1, n do
  local start_ms = tonumber(arg(i, 4))
  if start_ms >= 0 and (now < start_ms or now >= tonumber(arg(i, 5))) then
    return {-3, now}
  end
end

if redis.call('EXISTS', record) == 1 then
  return {-1}
end

for i = 1, n do
  local counter, holds = KEYS[2 * i], KEYS[2 * i + 1]
  expire_holds(counter, holds, now)
  local state = redis.call('HMGET', counter, 'spent', 'reserved')
  local used = big_add(big(state[1] or '0'), big(state[2] or '0'))
  local limit = big(arg(i, 1))
  if big_cmp(big_add(used, big(arg(i, 2))), limit) > 0 then
    return {0, i - 1, big_diff(limit, used)}
  end
end

local lease_until = now + lease_ms
local fields = {'state', 'held', 'n', n}
for i = 1, n do
  local counter, holds = KEYS[2 * i], KEYS[2 * i + 1]
  local amount = arg(i, 2)
  local ttl = tonumber(arg(i, 3))
  if tonumber(arg(i, 4)) >= 0 then
    ttl = tonumber(arg(i, 5)) - now + grace_ms
  end
  redis.call('HINCRBY', counter, 'reserved', amount)
  redis.call('HSET', counter, 'r:' .. hold_id, amount)
  redis.call('ZADD', holds, int(lease_until), hold_id)
  local expires_at = -1
  if ttl >= 0 then
    expires_at = now + ttl
    redis.call('PEXPIRE', counter, int(ttl))
    redis.call('PEXPIRE', holds, int(ttl))
  end
  table.insert(fields, 'c' .. i)
  table.insert(fields, counter)
  table.insert(fields, 'h' .. i)
  table.insert(fields, holds)
  table.insert(fields, 'x' .. i)
  table.insert(fields, int(expires_at))
end
redis.call('HSET', record, unpack(fields))
redis.call('PEXPIRE', record, int(lease_ms + retention_ms))
return {1}
