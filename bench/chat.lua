-- wrk script for bench/run.sh: POSTs a small non-streaming chat completion with the gateway's
-- auth header (the fake upstream and nginx ignore it), and prints exact figures from wrk's
-- histogram in done(), in microseconds, on one line that run.sh parses:
--   BENCH requests=N duration_us=N rps=F mean_us=F p50_us=N p90_us=N p99_us=N p999_us=N max_us=N
--         err_connect=N err_read=N err_write=N err_status=N err_timeout=N
-- The key comes from the BENCH_KEY environment variable (default "bench-key").
-- BENCH_HEADERS: extra request headers, "Name: value" lines separated by newlines (run.sh sets
--   Portkey's x-portkey-* headers this way, for the portkey target only).
-- BENCH_DELAY_MS: when set, each connection waits that long before each request (wrk's delay()
--   hook), which paces the load: the soak runs at about conns * 1000 / (delay + latency) req/s.

wrk.method = "POST"
wrk.path = "/v1/chat/completions"
wrk.body = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello."}]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Helicone-Auth"] = "Bearer " .. (os.getenv("BENCH_KEY") or "bench-key")
for line in (os.getenv("BENCH_HEADERS") or ""):gmatch("[^\n]+") do
  local name, value = line:match("^%s*([^:]+):%s*(.-)%s*$")
  if name then wrk.headers[name] = value end
end

local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "")
if delay_ms and delay_ms > 0 then
  function delay() return delay_ms end
end

function done(summary, latency, requests)
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    "BENCH requests=%d duration_us=%d rps=%.2f mean_us=%.2f p50_us=%d p90_us=%d p99_us=%d " ..
    "p999_us=%d max_us=%d err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d\n",
    summary.requests, summary.duration, secs > 0 and summary.requests / secs or 0, latency.mean,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
