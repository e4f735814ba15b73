-- Every request carries the bearer token; prints one machine-readable line
-- after wrk's own report.
wrk.headers["Authorization"] = "Bearer " .. os.getenv("CLOUD_TOKEN")
done = function(summary, latency, requests)
  local secs = summary.duration / 1e6
  io.write(string.format("RESULT requests=%d errors=%d rps=%.0f p50_ms=%.2f p99_ms=%.2f" ..
    " (errors: status %d connect %d read %d write %d timeout %d)\n",
    summary.requests,
    summary.errors.status + summary.errors.connect + summary.errors.read +
      summary.errors.write + summary.errors.timeout,
    summary.requests / secs, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.timeout))
end
