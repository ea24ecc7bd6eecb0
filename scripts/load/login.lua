-- wrk script for Tessera's POST /api/v1/auth/login with the correct password, as fast as
-- the connections allow (a login flood). Every 200 is a real Argon2id verification and a
-- new session; a 503 is the password-hashing queue saying it is full.
-- Usage: wrk ... -s scripts/load/login.lua http://HOST:PORT/api/v1/auth/login -- 'JSON_BODY'
--
-- The request itself is static (formatted once per thread); response() only counts
-- statuses, so wrk's own "requests/s" mixes 200s and 503s and the RESULT line splits them.

local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

setup = common.setup

-- Per-thread counters (globals so that done() can read them with thread:get()).
ok = 0                -- 200: logged in
busy = 0              -- 503: hashing queue full
busy_no_retry = 0     -- 503 without a Retry-After header (the contract says it has one)
other = 0             -- anything else (401, 5xx other than 503, ...)

function init(args)
  local body = args[1]
  if not body or body == "" then
    error("login.lua needs the JSON login body as its first argument (after --)")
  end
  wrk.method = "POST"
  wrk.body = body
  for k, v in pairs(common.json_headers) do wrk.headers[k] = v end
end

local function has_retry_after(headers)
  for name, _ in pairs(headers) do
    if string.lower(name) == "retry-after" then return true end
  end
  return false
end

function response(status, headers, body)
  if status == 200 then
    ok = ok + 1
  elseif status == 503 then
    busy = busy + 1
    if not has_retry_after(headers) then busy_no_retry = busy_no_retry + 1 end
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local logged_in = common.sum("ok")
  common.report(summary, latency, {
    { "ok", logged_in },
    { "ok_per_s", logged_in / seconds },
    { "busy_503", common.sum("busy") },
    { "busy_503_without_retry_after", common.sum("busy_no_retry") },
    { "other", common.sum("other") },
  })
end
