-- Shared by every agentbudget script (prepended when the script is loaded).
-- A counter is a hash {spent, reserved, r:<hold id> = amount}; its holds zset scores
-- each hold id by its lease end in ms. Holds whose lease has passed stop counting.

local function int(x)
  return string.format('%d', x)
end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function expire_holds(counter, holds, now)
  local expired = redis.call('ZRANGEBYSCORE', holds, '-inf', int(now))
  if #expired == 0 then
    return
  end
  local total = 0
  for _, id in ipairs(expired) do
    local field = 'r:' .. id
    local amount = redis.call('HGET', counter, field)
    if amount then
      total = total + tonumber(amount)
      redis.call('HDEL', counter, field)
    end
  end
  if total > 0 then
    redis.call('HINCRBY', counter, 'reserved', int(-total))
  end
  redis.call('ZREMRANGEBYSCORE', holds, '-inf', int(now))
end
