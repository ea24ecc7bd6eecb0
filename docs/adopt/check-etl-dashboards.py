"""Check for the ETL and dashboard platform's guide (etl-dashboards.md): its PBKDF2-SHA256
users import and log in by email, its roles map to Tessera roles and permissions, the current
session is found by id, the ETL service verifies tokens locally and a session invalidated
anywhere is refused there within a second."""

import base64
import hashlib
import json
import os
import time

from adoptcheck import ADMIN_EMAIL, ADMIN_PASSWORD, URL, api, check, cli, login, new_client
from tessera_client import AuthError, Verifier

PASSWORD = "etl platform password"


def passlib_pbkdf2_sha256(password: str, rounds: int = 100_000) -> str:
    """The ETL platform's stored format: passlib's `$pbkdf2-sha256$<rounds>$<salt>$<hash>`."""
    salt = os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, rounds)
    ab64 = lambda raw: base64.b64encode(raw).decode().rstrip("=").replace("+", ".")  # noqa: E731
    return f"$pbkdf2-sha256${rounds}${ab64(salt)}${ab64(digest)}"


admin = login(ADMIN_EMAIL, ADMIN_PASSWORD)["access_token"]

# The platform's `user` role ran ETL jobs and read dashboards: a custom role says so.
role = api("POST", "/api/v1/admin/roles", {
    "name": "etl-operator",
    "description": "runs ETL jobs and reads dashboards",
    "permissions": ["etl_jobs:read", "etl_jobs:execute", "dashboards:read"],
}, token=admin)
check(role.status in (200, 201), f"the etl-operator role is created ({role.status} {role.raw[:200]!r})")

lines = [
    {"email": "Etl.Admin@example.com", "first_name": "Etl", "last_name": "Admin",
     "password_hash": passlib_pbkdf2_sha256(PASSWORD), "roles": ["admin"]},
    {"email": "analyst@example.com", "first_name": "Ana", "last_name": "Lyst",
     "password_hash": passlib_pbkdf2_sha256(PASSWORD), "roles": ["etl-operator"]},
    {"email": "viewer@example.com", "password_hash": passlib_pbkdf2_sha256(PASSWORD), "roles": ["viewer"]},
]
code, out, err = cli("users", "import", "-", stdin="\n".join(json.dumps(line) for line in lines))
check(code == 0 and "imported 3" in out, f"`tessera users import` takes the PBKDF2-SHA256 users ({err.strip()})")
broken = json.dumps({"email": "broken@example.com", "password_hash": "$pbkdf2-sha256$100000$salt"})
code, _, err = cli("users", "import", "-", stdin=broken)
check(code != 0 and "line 1" in err, "a hash that can never verify is refused at import, naming its line")

# Their frontend posts `email`; the address is compared case-insensitively.
tokens = login("analyst@example.com", PASSWORD)
by_email = api("POST", "/api/v1/auth/login", {"email": "ETL.admin@example.com", "password": PASSWORD, "delivery": "body"})
check(by_email.status == 200, "login accepts the `email` field, case-insensitively")

# `/api/v1/admin/current-session` becomes `/api/v1/auth/sessions/current`: compared by id.
current = api("GET", "/api/v1/auth/sessions/current", token=tokens["access_token"]).json()
check(current["id"] == tokens["session_id"] and current["is_current"] is True, "the current session is found by its id")

# The ETL service verifies locally, with the feed, instead of calling the backend per request.
client_id, secret = new_client("etl-service", ["tokens:introspect"])
etl = Verifier.start(URL, "platform", client_id=client_id, client_secret=secret)
identity = etl.authenticate("POST", [("authorization", f"Bearer {tokens['access_token']}")])
check(identity.has_permission("etl_jobs:execute") and identity.has_permission("dashboards:read"),
      "the token carries the role's permissions in `scope`")
check(not identity.has_permission("admin_panel:admin"), "and nothing more")
viewer = etl.authenticate("GET", [("authorization", f"Bearer {login('viewer@example.com', PASSWORD)['access_token']}")])
check(viewer.has_permission("dashboards:read") and not viewer.has_permission("etl_jobs:execute"),
      "`view` users map to `viewer`: read everything, execute nothing")

# `/api/v1/admin/auth/invalidate-session` becomes logout (or revoking the session by id).
deadline = time.monotonic() + 5
while etl.revocations_live is not True and time.monotonic() < deadline:
    time.sleep(0.02)
revoked_at = time.monotonic()
check(api("POST", "/api/v1/auth/logout", token=tokens["access_token"]).status == 204, "logout invalidates the session")
while True:
    try:
        etl.verify(tokens["access_token"])
    except AuthError as e:
        check(e.code == "token_revoked", "the ETL service refuses the invalidated session")
        break
    if time.monotonic() - revoked_at >= 1.0:
        check(False, "refused within a second")
    time.sleep(0.01)
check(time.monotonic() - revoked_at < 1.0, "within a second of the logout")
etl.close()
print("etl-dashboards: every check passed")
