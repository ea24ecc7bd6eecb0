-- wrk script for Tessera's POST /api/v1/auth/refresh with rotating, single-use refresh
-- tokens.
-- Usage:
--   wrk -t T -c C ... -s scripts/load/refresh.lua http://HOST:PORT/api/v1/auth/refresh \
--       -- TOKENS_FILE 'LOGIN_JSON_BODY' T
-- TOKENS_FILE holds one refresh token per line (sessions logged in beforehand, at least one
-- per connection); thread k of T takes lines k, k+T, k+2T, …
--
-- Each thread keeps a queue of unspent tokens. request() takes one out and forgets it: a
-- spent token is never sent again, because Tessera revokes the whole session when a rotated
-- token comes back after the grace window. response() puts the successor from a 200 answer
-- back in. wrk does not say which connection an answer belongs to, and it does not need to:
-- every connection has one request in flight, each in-flight request will give back one
-- token, so with at least as many tokens as connections the queue never runs dry. Chains are
-- interchangeable; what matters is that each token is used once.
--
-- If a refresh fails (non-200, or the connection broke so no answer comes) its chain ends;
-- when the queue is empty, the thread logs in again for a fresh chain. Those logins are
-- counted, and a clean run has none.

local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

setup = common.setup

ok = 0              -- 200 answers (refreshes, plus fallback logins if any)
failed = 0          -- non-200 answers
relogins = 0        -- fallback logins sent because the queue was empty
no_token = 0        -- a 200 whose body had no refresh_token

local queue = {}
local head, tail = 1, 0
local probed = false
local refresh_path, login_path, login_body

function init(args)
  local file = assert(args[1], "refresh.lua needs TOKENS_FILE as its first argument (after --)")
  login_body = assert(args[2], "refresh.lua needs the JSON login body as its second argument")
  local threads = tonumber(args[3])
  assert(threads, "refresh.lua needs the wrk thread count as its third argument")
  refresh_path = wrk.path
  login_path = (refresh_path:gsub("/refresh$", "/login"))
  local n = 0
  for line in assert(io.open(file)):lines() do
    if n % threads == thread_id - 1 and line ~= "" then
      tail = tail + 1
      queue[tail] = line
    end
    n = n + 1
  end
end

function request()
  -- wrk calls request() once on the first thread's state before the run (to check the
  -- request) and never sends it: answer that call with one that spends no token.
  if thread_id == 1 and not probed then
    probed = true
    return wrk.format("POST", refresh_path, common.json_headers, '{"refresh_token":"wrk-probe"}')
  end
  if head <= tail then
    local token = queue[head]
    queue[head] = nil
    head = head + 1
    return wrk.format("POST", refresh_path, common.json_headers, '{"refresh_token":"' .. token .. '"}')
  end
  relogins = relogins + 1
  return wrk.format("POST", login_path, common.json_headers, login_body)
end

function response(status, headers, body)
  if status == 200 then
    local token = body:match('"refresh_token"%s*:%s*"([^"]+)"')
    if token == nil then
      no_token = no_token + 1
    else
      ok = ok + 1
      tail = tail + 1
      queue[tail] = token
    end
  else
    failed = failed + 1
  end
end

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local failures = common.sum("failed")
  local relogin_count = common.sum("relogins")
  local refreshed = common.sum("ok") - relogin_count
  common.report(summary, latency, {
    { "ok", refreshed },
    { "ok_per_s", refreshed / seconds },
    { "non200", failures },
    { "relogins", relogin_count },
    { "no_token", common.sum("no_token") },
  })
end
