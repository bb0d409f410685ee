-- wrk script: POST the file named by BENCH_BODY as JSON on every request, and print the
-- phase's outcome as one JSON line that benchmarks/loadgen.py reads.
-- wrk's scripting API: https://github.com/wg/wrk/blob/master/SCRIPTING
local body_file = assert(io.open(assert(os.getenv("BENCH_BODY"), "BENCH_BODY is not set"), "rb"))
wrk.method = "POST"
wrk.body = body_file:read("*a")
body_file:close()
wrk.headers["Content-Type"] = "application/json"

-- summary.requests counts every response; errors.status counts those outside 2xx and 3xx.
-- Latencies are in microseconds.
function done(summary, latency, requests)
   local errors = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"responses": %d, "seconds": %.6f, "connect_errors": %d, ' ..
      '"read_errors": %d, "write_errors": %d, "status_errors": %d, "timeouts": %d, ' ..
      '"p50_ms": %.4f, "p99_ms": %.4f}\n',
      summary.requests, summary.duration / 1e6, errors.connect, errors.read, errors.write,
      errors.status, errors.timeout, latency:percentile(50) / 1e3, latency:percentile(99) / 1e3))
end
