-- Shared by Tessera's wrk scripts (scripts/load/*.lua), loaded with dofile: numbers each
-- wrk thread, sums per-thread counters in done(), and prints the one machine-readable
-- "RESULT key=value ..." line that scripts/load-auth reads.
--
-- wrk gives every thread its own Lua state plus one main state that runs setup() and
-- done(); counters therefore live as globals in each thread's state and are fetched
-- with thread:get() once the threads have stopped.

local common = {}

local threads = {} -- only filled in the main state, where setup() runs

-- setup(thread): runs in the main state once per thread, before that thread's init().
function common.setup(thread)
  threads[#threads + 1] = thread
  thread:set("thread_id", #threads)
end

-- Sum of a numeric global over every thread's state (call from done()).
function common.sum(name)
  local total = 0
  for _, thread in ipairs(threads) do
    total = total + (thread:get(name) or 0)
  end
  return total
end

-- Prints the RESULT line: throughput and latency from wrk, plus the script's own
-- counters in `extra`, a list of {key, value} pairs (kept in order for readability).
-- Latencies are in milliseconds; wrk records microseconds.
function common.report(summary, latency, extra)
  local seconds = summary.duration / 1e6
  local e = summary.errors
  local fields = {
    string.format("requests=%d", summary.requests),
    string.format("seconds=%.3f", seconds),
    string.format("rps=%.1f", summary.requests / seconds),
    string.format("mean_ms=%.3f", latency.mean / 1000),
    string.format("p50_ms=%.3f", latency:percentile(50) / 1000),
    string.format("p99_ms=%.3f", latency:percentile(99) / 1000),
    string.format("max_ms=%.3f", latency.max / 1000),
    string.format("status_ge_400=%d", e.status),
    string.format("socket_errors=%d", e.connect + e.read + e.write),
    string.format("timeouts=%d", e.timeout),
  }
  for _, kv in ipairs(extra or {}) do
    local value = kv[2]
    if math.floor(value) == value then
      fields[#fields + 1] = string.format("%s=%d", kv[1], value)
    else
      fields[#fields + 1] = string.format("%s=%.1f", kv[1], value)
    end
  end
  io.write("RESULT " .. table.concat(fields, " ") .. "\n")
end

-- JSON request headers shared by the POST scripts.
common.json_headers = { ["Content-Type"] = "application/json", ["Accept"] = "application/json" }

return common
