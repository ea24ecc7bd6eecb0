"""Check for the ISP operations platform's guide (isp-operations.md): a cookie-first login by
`username`, the backend middleware reading the cookie (no localStorage, no Bearer needed), the
CSRF rule on cookie requests, and real-time handshakes authenticated by the cookie instead of
`?token=`."""

import json

from adoptcheck import URL, Browser, check, cli, new_client
from tessera_client import AuthError, Verifier

PASSWORD = "noc operator password"

line = {"email": "noc@example.com", "username": "noc-operator", "password": PASSWORD, "roles": ["user"]}
code, _, err = cli("users", "import", "-", stdin=json.dumps(line))
check(code == 0, f"an operator account with a username is imported ({err.strip()})")

# Their login form posts `username`; cookies carry the tokens (the default delivery).
page = Browser(origin=URL)
response = page.request("POST", "/api/v1/auth/login", {"username": "noc-operator", "password": PASSWORD})
check(response.status == 200, f"login by `username` with cookie delivery ({response.status})")
body = response.json()
check("access_token" not in body and "refresh_token" not in body, "no token reaches JavaScript: nothing for localStorage")
access, csrf = page.cookie("access_token"), page.cookie("csrf_token")
check(access is not None and csrf is not None, "the access, refresh and CSRF cookies are set")
check(page.request("GET", "/api/v1/auth/me").status == 200, "cookie-only requests are authenticated")

# The backend's audit middleware: Bearer first, then the cookie, both through one verifier.
client_id, secret = new_client("isp-backend", ["tokens:introspect"])
backend = Verifier.start(URL, "platform", client_id=client_id, client_secret=secret)
cookie_header = [("cookie", f"access_token={access}; csrf_token={csrf}"), ("host", URL.split("//", 1)[1])]
identity = backend.authenticate("GET", cookie_header)
check(identity.via_cookie and identity.tid != "", "the middleware reads the user and tenant from the cookie")

# Unsafe cookie requests need the CSRF header, at Tessera and at the backend alike.
refused = page.request("POST", "/api/v1/auth/sessions/revoke-others")
check(refused.status == 403 and refused.json()["code"] == "csrf_failed", "Tessera refuses a cookie POST without X-CSRF-Token")
allowed = page.request("POST", "/api/v1/auth/sessions/revoke-others", headers={"X-CSRF-Token": csrf})
check(allowed.status in (200, 204), f"and takes it with the header ({allowed.status})")
try:
    backend.authenticate("POST", cookie_header + [("origin", URL)])
    check(False, "the backend refuses a cookie POST without X-CSRF-Token")
except AuthError as e:
    check(e.code == "csrf_failed", "the backend refuses a cookie POST without X-CSRF-Token")
backend.authenticate("POST", cookie_header + [("origin", URL), ("x-csrf-token", csrf)])
check(True, "the backend takes it with the header")

# SSE and WebSocket handshakes: the browser sends the cookie; `?token=` is never read.
handshake = [("upgrade", "websocket"), ("connection", "Upgrade")] + cookie_header
check(backend.authenticate("GET", handshake).sub == identity.sub, "a WebSocket handshake is authenticated by the cookie")
try:
    backend.authenticate("GET", [("upgrade", "websocket")])
    check(False, "a handshake with only ?token= in its URL is refused")
except AuthError as e:
    check(e.code == "unauthenticated", "a handshake with only ?token= in its URL is refused")
backend.close()
print("isp-operations: every check passed")
