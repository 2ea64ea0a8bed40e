-- wrk script of benches/load.rs: every request carries the next session
-- cookie from a token file (one token per line), rotating through all of
-- them; each wrk thread starts at a different offset. Arguments after `--`:
--   1: token file   2: Host header   3: path   4: number of wrk threads
-- Thread i starts at token i * n / threads, so the threads walk disjoint
-- stretches of the list and never request one token at the same time.
-- `done` prints one machine-readable RESULT line (latencies in µs).

local counter = 0

function setup(thread)
   thread:set("id", counter)
   counter = counter + 1
end

local tokens = {}
local idx = 1
local headers = {}
local path = "/"

function init(args)
   for line in io.lines(args[1]) do
      if #line > 0 then
         tokens[#tokens + 1] = "CF_Authorization=" .. line
      end
   end
   headers["Host"] = args[2]
   headers["User-Agent"] = "wrk (portcullis load bench)"
   headers["Accept"] = "application/json, */*;q=0.5"
   path = args[3] or "/"
   local threads = tonumber(args[4] or "1")
   local n = #tokens
   if n > 0 then
      idx = math.floor((id or 0) * n / threads) % n + 1
   end
end

function request()
   headers["Cookie"] = tokens[idx]
   idx = idx % #tokens + 1
   return wrk.format("GET", path, headers)
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "RESULT requests=%d duration_us=%d bytes=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d mean_us=%.1f " ..
      "connect_errors=%d read_errors=%d write_errors=%d status_errors=%d timeouts=%d\n",
      summary.requests, summary.duration, summary.bytes,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
      e.connect, e.read, e.write, e.status, e.timeout))
end
