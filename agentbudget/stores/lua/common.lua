-- Shared by every agentbudget script (prepended when the script is loaded).
-- A counter is a hash {spent, reserved, r:<hold id> = amount}; its holds zset scores
-- each hold id by its lease end in ms. Holds whose lease has passed stop counting.

local function int(x)
  return string.format('%d', x)
end

-- Exact arithmetic on counters up to 2^63 (Lua numbers are doubles, exact only to
-- 2^53): a non-negative integer is kept as two limbs of 9 decimal digits, {hi, lo}.
local LIMB = 1000000000

local function big(s)
  s = s or '0'
  local n = #s
  if n <= 9 then
    return {0, tonumber(s)}
  end
  return {tonumber(string.sub(s, 1, n - 9)), tonumber(string.sub(s, n - 8))}
end

local function big_add(a, b)
  local hi, lo = a[1] + b[1], a[2] + b[2]
  if lo >= LIMB then
    return {hi + 1, lo - LIMB}
  end
  return {hi, lo}
end

local function big_cmp(a, b)
  if a[1] ~= b[1] then
    return (a[1] < b[1]) and -1 or 1
  end
  if a[2] ~= b[2] then
    return (a[2] < b[2]) and -1 or 1
  end
  return 0
end

local function big_str(a)
  if a[1] == 0 then
    return int(a[2])
  end
  return string.format('%d%09d', a[1], a[2])
end

-- a - b as a decimal string (negative when b > a).
local function big_diff(a, b)
  local sign = ''
  if big_cmp(a, b) < 0 then
    a, b, sign = b, a, '-'
  end
  local hi, lo = a[1] - b[1], a[2] - b[2]
  if lo < 0 then
    hi, lo = hi - 1, lo + LIMB
  end
  return sign .. big_str({hi, lo})
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
  local total = {0, 0}
  for _, id in ipairs(expired) do
    local field = 'r:' .. id
    local amount = redis.call('HGET', counter, field)
    if amount then
      total = big_add(total, big(amount))
      redis.call('HDEL', counter, field)
    end
  end
  if big_cmp(total, {0, 0}) > 0 then
    redis.call('HINCRBY', counter, 'reserved', '-' .. big_str(total))
  end
  redis.call('ZREMRANGEBYSCORE', holds, '-inf', int(now))
end
