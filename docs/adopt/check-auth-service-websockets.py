"""Check for the guide of the platform with a separate auth service and WebSockets
(auth-service-websockets.md): no shared JWT secret anywhere, the deploy preflight, the golden
path (login by email, backend and WebSocket verify the same token locally), a logout honoured
by the backend within a second, and introspection for the services that must ask."""

import time

from adoptcheck import ADMIN_EMAIL, ADMIN_PASSWORD, URL, api, check, cli, new_client
from tessera_client import AuthError, Verifier

# Deploy-time preflight instead of hand-written secret-sync checks.
code, out, err = cli("check", "--json")
check(code == 0, f"`tessera check` passes before the deploy ({err.strip()[:300]})")

# Nothing secret is published: services verify with public keys only.
jwks = api("GET", "/.well-known/jwks.json").json()
check(jwks["keys"] and all(k["kty"] in ("OKP", "EC") for k in jwks["keys"]), "the JWKS holds public keys only")

# The golden path: login with `email`, as their scripts post it.
response = api("POST", "/api/v1/auth/login", {"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD, "delivery": "body"})
check(response.status == 200, "login by `email` answers tokens")
tokens = response.json()

client_id, secret = new_client("chat-backend", ["tokens:introspect"])
backend = Verifier.start(URL, "platform", client_id=client_id, client_secret=secret)
bearer = [("authorization", f"Bearer {tokens['access_token']}")]
rest = backend.authenticate("GET", bearer)
socket_handshake = backend.authenticate("GET", bearer + [("upgrade", "websocket"), ("connection", "Upgrade")])
check(rest.sub == socket_handshake.sub == rest.claims["sub"], "REST and WebSocket verify the same token the same way")

asking = Verifier.start(URL, "platform", client_id=client_id, client_secret=secret, introspection=True, introspection_cache=0)
check(asking.verify(tokens["access_token"])["sub"] == rest.sub, "introspection agrees while the session lives")

deadline = time.monotonic() + 5
while backend.revocations_live is not True and time.monotonic() < deadline:
    time.sleep(0.02)
revoked_at = time.monotonic()
check(api("POST", "/api/v1/auth/logout", token=tokens["access_token"]).status == 204, "logout")
while True:
    try:
        backend.verify(tokens["access_token"])
    except AuthError as e:
        check(e.code == "token_revoked", "the backend refuses the logged-out token (close the socket with 4401)")
        break
    if time.monotonic() - revoked_at >= 1.0:
        check(False, "refused within a second")
    time.sleep(0.01)
try:
    asking.verify(tokens["access_token"])
    check(False, "introspection sees the logout at once")
except AuthError as e:
    check(e.code == "token_inactive", "introspection sees the logout at once")
backend.close()
print("auth-service-websockets: every check passed")
