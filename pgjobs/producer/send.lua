-- Store committed jobs' messages and wake the consumers waiting on their queues, atomically,
-- in one call (pgjobs/producer/wire.py sends it with EVALSHA).
--
-- It writes what Dramatiq's dispatch.lua `enqueue` writes per message (the body into the
-- queue's message hash, the id onto the queue's list), for many messages at once, then rings
-- the queues' doorbells (the sleepers sets pgjobs/worker/consumer.py registers in).
--
-- KEYS, three per queue written to, in this order:
--   <ns>:<queue>            the queue's list of message ids (RPUSH)
--   <ns>:<queue>.msgs       the queue's hash of message bodies by id (HSET)
--   <ns>:<queue>.sleepers   the set of doorbells of consumers waiting on the queue
-- ARGV:
--   ARGV[1]                 how long (ms) a doorbell rung for nobody lives
--   then per queue, in the order of KEYS: the count n of its messages, then n pairs
--   (message id, encoded message)
-- Returns the number of consumers woken.

local ttl = ARGV[1]
local at = 2
local woken = 0
local chunk = 4000 -- arguments per unpack: Lua's C stack holds about 8000

for q = 1, #KEYS, 3 do
    local n = tonumber(ARGV[at])
    local first = at + 1
    local last = at + 2 * n
    at = last + 1
    local ids = {}
    for i = first, last, 2 do
        ids[#ids + 1] = ARGV[i]
    end
    for i = first, last, chunk do
        redis.call("hset", KEYS[q + 1], unpack(ARGV, i, math.min(i + chunk - 1, last)))
    end
    for i = 1, #ids, chunk do
        redis.call("rpush", KEYS[q], unpack(ids, i, math.min(i + chunk - 1, #ids)))
    end
    local sleepers = redis.call("smembers", KEYS[q + 2])
    if #sleepers > 0 then
        redis.call("del", KEYS[q + 2])
        for j = 1, #sleepers do
            redis.call("rpush", sleepers[j], "1")
            redis.call("pexpire", sleepers[j], ttl)
        end
        woken = woken + #sleepers
    end
end
return woken
