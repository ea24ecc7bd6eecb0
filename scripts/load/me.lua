-- wrk script for Tessera's GET /api/v1/auth/me with a Bearer access token.
-- Usage: wrk ... -s scripts/load/me.lua http://HOST:PORT/api/v1/auth/me -- ACCESS_TOKEN
--
-- The request is static (no request()/response() functions): wrk formats it once per
-- thread and never calls into Lua per request, so the client stays as cheap as possible
-- and the server is what gets measured. Non-2xx answers show up as status_ge_400.

local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

setup = common.setup

function init(args)
  local token = args[1]
  if not token or token == "" then
    error("me.lua needs the access token as its first argument (after --)")
  end
  wrk.method = "GET"
  wrk.headers["Authorization"] = "Bearer " .. token
  wrk.headers["Accept"] = "application/json"
end

function done(summary, latency, requests)
  common.report(summary, latency)
end
