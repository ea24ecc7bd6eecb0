"""Check for the FastAPI platform's guide (fastapi-sessions.md): the sessions page (list with
the platform's pagination shape and `is_current`, revoke one, revoke the others), refresh
rotation, rate-limit headers on login, and CSP reports."""

import json

from adoptcheck import api, check, cli, login

PASSWORD = "sessions page password"
code, _, err = cli("users", "import", "-", stdin=json.dumps({"email": "dev@example.com", "password": PASSWORD}))
check(code == 0, f"an account is imported ({err.strip()})")

laptop = login("dev@example.com", PASSWORD)
phone = api("POST", "/api/v1/auth/login", {"login": "dev@example.com", "password": PASSWORD, "delivery": "body"},
            headers={"User-Agent": "phone"})
check(phone.status == 200, "a second device logs in")
for name in ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset"):
    check(phone.headers.get(name) is not None, f"login answers carry {name}")
phone = phone.json()

page = api("GET", "/api/v1/auth/sessions?page=1&page_size=20", token=laptop["access_token"]).json()
check(set(page) >= {"items", "total", "page", "page_size", "pages"}, "sessions come as {items, total, page, page_size, pages}")
check(page["total"] == 2 and sum(s["is_current"] for s in page["items"]) == 1, "both sessions are listed, the current one marked")
check(all("token" not in key for s in page["items"] for key in s), "no token value is listed")

# Refresh rotation: a new refresh token every time.
rotated = api("POST", "/api/v1/auth/refresh", {"refresh_token": laptop["refresh_token"]})
check(rotated.status == 200 and rotated.json()["refresh_token"] != laptop["refresh_token"], "refresh rotates the refresh token")
laptop = rotated.json()

revoke = api("POST", f"/api/v1/auth/sessions/{phone['session_id']}/revoke", token=laptop["access_token"])
check(revoke.status in (200, 204), f"one session is revoked ({revoke.status})")
dead = api("POST", "/api/v1/auth/refresh", {"refresh_token": phone["refresh_token"]})
check(dead.status == 401, "the revoked session can no longer refresh")

login("dev@example.com", PASSWORD)
others = api("POST", "/api/v1/auth/sessions/revoke-others", token=laptop["access_token"])
check(others.status in (200, 204), "revoke-others")
left = api("GET", "/api/v1/auth/sessions", token=laptop["access_token"]).json()
check(left["total"] == 1 and left["items"][0]["is_current"], "only the current session remains")

report = {"csp-report": {"document-uri": "https://app.example/", "violated-directive": "script-src-elem",
                         "effective-directive": "script-src-elem", "blocked-uri": "inline"}}
sent = api("POST", "/api/v1/csp-report", headers={"Content-Type": "application/csp-report"},
           raw=json.dumps(report).encode())
check(sent.status == 204, "CSP violation reports are accepted")
print("fastapi-sessions: every check passed")
