-- wrk script for Tessera's OAuth endpoints as a service calls them: a form body and HTTP
-- Basic client authentication.
-- Usage: wrk ... -s scripts/load/oauth.lua URL -- BASIC_CREDENTIALS 'FORM_BODY'
--   /oauth2/token:      FORM_BODY = grant_type=client_credentials
--   /oauth2/introspect: FORM_BODY = token=<an access token>
-- Counts 200 answers, and for introspection how many said "active":true, so a run that only
-- measured inactive answers (an expired token, say) shows it.

local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

setup = common.setup

ok = 0
active = 0

function init(args)
  assert(args[1] and args[2], "oauth.lua needs BASIC_CREDENTIALS and FORM_BODY after --")
  wrk.method = "POST"
  wrk.body = args[2]
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
  wrk.headers["Authorization"] = "Basic " .. args[1]
end

function response(status, headers, body)
  if status == 200 then
    ok = ok + 1
    if body:find('"active":true', 1, true) then active = active + 1 end
  end
end

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  common.report(summary, latency, {
    { "ok_per_s", common.sum("ok") / seconds },
    { "active", common.sum("active") },
  })
end
