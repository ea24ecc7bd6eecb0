"""What the guides' checks share: a small HTTP client with a cookie jar (standard library
only), the operator CLI, and a way to fail with a clear message.

The checks run against a live Tessera named by `CHECK_TESSERA_URL`, with the operator CLI at
`CHECK_TESSERA_BIN` configured by the same environment as the server (see run-checks.sh), and the
bootstrap admin's `CHECK_ADMIN_EMAIL` / `CHECK_ADMIN_PASSWORD`.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, List, Optional, Tuple

URL = os.environ.get("CHECK_TESSERA_URL", "http://127.0.0.1:8080").rstrip("/")
BIN = os.environ.get("CHECK_TESSERA_BIN", "tessera")
ADMIN_EMAIL = os.environ.get("CHECK_ADMIN_EMAIL", "admin@example.com")
ADMIN_PASSWORD = os.environ.get("CHECK_ADMIN_PASSWORD", "")


def check(condition: bool, what: str) -> None:
    """Fails the check, saying what was expected, unless `condition`."""
    if not condition:
        print(f"FAILED: {what}", file=sys.stderr)
        sys.exit(1)
    print(f"ok: {what}")


class Response:
    def __init__(self, status: int, headers: Any, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.raw = body

    def json(self) -> Any:
        return json.loads(self.raw) if self.raw else None


class Browser:
    """Requests with a cookie jar and an `Origin`, as a page of the platform would send them."""

    def __init__(self, origin: Optional[str] = None) -> None:
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        self.origin = origin

    def cookie(self, name: str) -> Optional[str]:
        return next((c.value for c in self.jar if c.name == name), None)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: Optional[Dict[str, str]] = None,
        form: Optional[Dict[str, str]] = None,
        raw: Optional[bytes] = None,
    ) -> Response:
        data = raw
        all_headers = dict(headers or {})
        if body is not None:
            data = json.dumps(body).encode()
            all_headers.setdefault("Content-Type", "application/json")
        if form is not None:
            data = urllib.parse.urlencode(form).encode()
            all_headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        if self.origin is not None:
            all_headers.setdefault("Origin", self.origin)
        request = urllib.request.Request(URL + path, data=data, method=method, headers=all_headers)
        try:
            with self.opener.open(request, timeout=15) as response:
                return Response(response.status, response.headers, response.read())
        except urllib.error.HTTPError as e:
            return Response(e.code, e.headers, e.read())


def api(method: str, path: str, body: Any = None, token: Optional[str] = None, **kw: Any) -> Response:
    """One request without cookies, with a Bearer token when given."""
    headers = dict(kw.pop("headers", {}) or {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return Browser().request(method, path, body, headers=headers, **kw)


def login(login: str, password: str, **fields: Any) -> Dict[str, Any]:
    """Tokens in the body (`delivery: body`), as a service or script logs in."""
    response = api("POST", "/api/v1/auth/login", {"login": login, "password": password, "delivery": "body", **fields})
    if response.status != 200:  # the body of a success holds tokens: never printed
        check(False, f"login of {login} answers 200 (got {response.status} {response.raw[:200]!r})")
    return response.json()


def cli(*args: str, stdin: str = "") -> Tuple[int, str, str]:
    """Runs the operator CLI; returns its exit code, stdout and stderr."""
    done = subprocess.run([BIN, *args], input=stdin, capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout, done.stderr


def new_client(name: str, scopes: List[str]) -> Tuple[str, str]:
    """A service account made with the CLI: its id and secret."""
    args = ["clients", "create", "--name", name]
    for scope in scopes:
        args += ["--scope", scope]
    code, out, err = cli(*args)
    check(code == 0, f"`tessera clients create --name {name}` succeeds ({err.strip()})")
    values = {}
    for line in out.splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            values[key] = value.strip()
    return values["client_id"], values["client_secret"]
