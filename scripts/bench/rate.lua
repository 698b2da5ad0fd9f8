-- wrk script for a rate-limited (not closed-loop) run: every connection waits
-- DELAY_MS after each response before it sends the next request, so the
-- offered rate is about connections * 1000 / (DELAY_MS + latency) and, while
-- latency stays well below DELAY_MS, does not depend on how fast the proxy is.
-- wrk times each request from the moment it is written, so the wait is not
-- counted as latency. Usage: wrk ... -s rate.lua -- DELAY_MS

local delay_ms = 2

function init(args)
    if args[1] then
        delay_ms = tonumber(args[1])
    end
end

function delay()
    return delay_ms
end
