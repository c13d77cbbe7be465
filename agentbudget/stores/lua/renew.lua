-- Renew a reservation's lease: its holds last lease ms from now (the server's clock).
-- KEYS: the reservation record (its counters and holds are read from it, same slot).
-- ARGV: hold id, lease ms, retention ms.
-- Returns {1} when renewed, {0} when the reservation is settled, unknown or its lease
-- already passed (a lapsed hold is not taken again).
local record = KEYS[1]
local hold_id = ARGV[1]
local lease_ms = tonumber(ARGV[2])
local retention_ms = tonumber(ARGV[3])
local now = now_ms()

if redis.call('HGET', record, 'state') ~= 'held' then
  return {0}
end
local n = tonumber(redis.call('HGET', record, 'n'))
local lease_until = now + lease_ms
local renewed = 0
for i = 1, n do
  local entry = redis.call('HMGET', record, 'c' .. i, 'h' .. i)
  local counter, holds = entry[1], entry[2]
  local score = redis.call('ZSCORE', holds, hold_id)
  if score and tonumber(score) > now and redis.call('HEXISTS', counter, 'r:' .. hold_id) == 1 then
    redis.call('ZADD', holds, 'XX', int(lease_until), hold_id)
    renewed = 1
  end
end
if renewed == 1 then
  redis.call('PEXPIRE', record, int(lease_ms + retention_ms))
end
return {renewed}
