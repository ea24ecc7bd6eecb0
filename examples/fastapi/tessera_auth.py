"""Tessera access tokens in a FastAPI service: one file to copy next to your app.

    auth = TesseraAuth(issuer="https://auth.example.com", audience="platform")
    app.add_exception_handler(TesseraAuthError, problem_response)

    @app.get("/whoami")
    def whoami(identity: Identity = Depends(auth)): ...

    @app.post("/reports")
    def create(identity: Identity = Depends(auth.require("reports:write"))): ...

The rules are Tessera's own:

- the token is read from `Authorization: Bearer <token>`, else from the `access_token` cookie,
  never from the query string; a malformed `Authorization` header is refused, not skipped;
- keys come from the JWKS that Tessera's metadata (`{issuer}/.well-known/oauth-authorization-server`)
  names, cached, and fetched again when a token names an unknown `kid` (a rotated key);
- tokens must have `typ: at+jwt`, be signed with EdDSA or ES256, and carry the expected `iss`
  and `aud` with `exp`, `iat` and `sub`;
- permissions are the token's `scope`, `resource:action` pairs where either part may be `*`.
  A held wildcard covers a request; a requested wildcard is covered only by a held one.

Errors are RFC 9457 problem+json, as Tessera answers them: 401 with a `WWW-Authenticate: Bearer`
challenge for a missing or invalid token, 403 for a missing permission, 503 when Tessera cannot
be reached to fetch its keys.

Requires `PyJWT[crypto]>=2.8` and FastAPI. Tokens are checked locally: a token revoked before
it expires is still accepted here until `exp` (use Tessera's introspection endpoint where that
matters).
"""

from __future__ import annotations

import json
import re
import threading
import urllib.request
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Callable

import jwt
from fastapi import Depends, Request
from fastapi.responses import JSONResponse

__all__ = [
    "Identity",
    "TesseraAuth",
    "TesseraAuthError",
    "extract_token",
    "has_permission",
    "problem_response",
]

ALGORITHMS = ["EdDSA", "ES256"]
REQUIRED_CLAIMS = ["iss", "aud", "exp", "iat", "sub"]
# Tessera never issues a longer token; anything bigger is refused before it is parsed.
MAX_TOKEN_BYTES = 8 * 1024
# Clock skew tolerated on `exp`, `nbf` and `iat`, as Tessera's own verifier does.
LEEWAY_SECONDS = 30
# How long the key set is trusted before it is fetched again, so a key Tessera retires stops
# being accepted within this time.
JWKS_LIFESPAN_SECONDS = 300
# Either part of a permission: `*`, or lowercase letters, digits, `_`, `-` and `.`.
_PART = re.compile(r"\*|[a-z0-9_.-]{1,64}")
# Trimmed around cookie names and values, as Tessera does; a bare `strip()` would also take
# the non-ASCII spaces that latin-1 header text can hold.
_ASCII_SPACE = " \t\n\r\f"


class TesseraAuthError(Exception):
    """A request refused: the HTTP status, Tessera's stable `code`, and a safe `detail`."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail

    @classmethod
    def unauthenticated(cls) -> TesseraAuthError:
        return cls(401, "unauthenticated", "this endpoint needs an access token")

    @classmethod
    def invalid_token(cls, detail: str) -> TesseraAuthError:
        return cls(401, "invalid_token", detail)

    def headers(self) -> dict[str, str]:
        """The challenge RFC 6750 asks a resource server to send with the error."""
        if self.code == "unauthenticated":
            return {"WWW-Authenticate": "Bearer"}
        if self.status == 401:
            return {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        if self.status == 403:
            return {"WWW-Authenticate": 'Bearer error="insufficient_scope"'}
        return {}


def problem_response(_request: Request, error: TesseraAuthError) -> JSONResponse:
    """The exception handler: `app.add_exception_handler(TesseraAuthError, problem_response)`."""
    body = {
        "type": f"urn:tessera:problem:{error.code}",
        "title": HTTPStatus(error.status).phrase,
        "status": error.status,
        "code": error.code,
        "detail": error.detail,
    }
    return JSONResponse(
        body,
        status_code=error.status,
        media_type="application/problem+json",
        headers={"Cache-Control": "no-store", **error.headers()},
    )


@dataclass(frozen=True)
class Identity:
    """The verified caller."""

    sub: str
    """User id, or client id for a service account."""
    tid: str
    """Tenant id."""
    roles: list[str]
    """Role names within the tenant."""
    scope: str
    """Space-separated permissions (`resource:action`)."""
    claims: dict[str, Any] = field(repr=False)
    """Every verified claim."""

    def has_permission(self, wanted: str) -> bool:
        return has_permission(self.scope, wanted)


def _parse_permission(text: str) -> tuple[str, str] | None:
    resource, sep, action = text.partition(":")
    if sep and _PART.fullmatch(resource) and _PART.fullmatch(action):
        return resource, action
    return None


def _wanted_permission(text: str) -> tuple[str, str]:
    parsed = _parse_permission(text)
    if parsed is None:
        raise ValueError(f"{text!r} is not a permission: expected `resource:action`")
    return parsed


def has_permission(scope: str, wanted: str) -> bool:
    """Whether a space-separated `scope` allows the permission `wanted`."""
    resource, action = _wanted_permission(wanted)

    def covers(held: str, requested: str) -> bool:
        return held == "*" or held == requested

    for item in scope.split(" "):
        held = _parse_permission(item)
        if held is not None and covers(held[0], resource) and covers(held[1], action):
            return True
    return False


def _checked(token: str) -> str:
    if len(token) > MAX_TOKEN_BYTES:
        raise TesseraAuthError.invalid_token("credential too large")
    return token


def extract_token(headers: Any, cookie_name: str = "access_token") -> str | None:
    """The request's token, in Tessera's order: `Authorization: Bearer`, then the cookie.

    `headers` is Starlette's `Headers` (anything with `getlist`). A malformed header or a
    cookie sent twice is an error rather than "no token": falling back would let a bad
    header hide behind a cookie.
    """
    authorization = headers.getlist("authorization")
    if authorization:
        if len(authorization) > 1 or not authorization[0].isascii():
            raise TesseraAuthError.invalid_token("malformed Authorization header")
        scheme, sep, token = authorization[0].partition(" ")
        token = token.strip(" ")
        if not sep or scheme.lower() != "bearer" or not token or " " in token:
            raise TesseraAuthError.invalid_token("malformed Authorization header")
        return _checked(token)

    found = None
    seen = False
    for header in headers.getlist("cookie"):
        for pair in header.split(";"):
            name, sep, value = pair.partition("=")
            if not sep or name.strip(_ASCII_SPACE) != cookie_name:
                continue
            if seen:
                raise TesseraAuthError.invalid_token("ambiguous access-token cookie")
            seen = True
            value = value.strip(_ASCII_SPACE).strip('"')
            if value and value.isascii():
                found = _checked(value)
    return found


class TesseraAuth:
    """A FastAPI dependency verifying Tessera access tokens; `Depends(auth)` gives an
    `Identity`, `Depends(auth.require("resource:action"))` also checks a permission."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        *,
        cookie_name: str = "access_token",
        timeout: float = 5.0,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self.cookie_name = cookie_name
        self.timeout = timeout
        self._jwks: jwt.PyJWKClient | None = None
        self._lock = threading.Lock()

    def _jwks_client(self) -> jwt.PyJWKClient:
        """The key client, made on first use from Tessera's metadata (so the app starts
        even while Tessera is down); a failed discovery is tried again on the next request."""
        with self._lock:
            if self._jwks is None:
                url = f"{self.issuer}/.well-known/oauth-authorization-server"
                try:
                    with urllib.request.urlopen(url, timeout=self.timeout) as response:
                        metadata = json.load(response)
                except (OSError, ValueError) as e:
                    raise TesseraAuthError(
                        503, "unavailable", "the token issuer cannot be reached"
                    ) from e
                # RFC 8414 §3.3: metadata naming another issuer must not be used.
                if metadata.get("issuer") != self.issuer or "jwks_uri" not in metadata:
                    raise TesseraAuthError(
                        503, "unavailable", "the token issuer's metadata does not match"
                    )
                self._jwks = jwt.PyJWKClient(
                    metadata["jwks_uri"],
                    lifespan=JWKS_LIFESPAN_SECONDS,
                    timeout=self.timeout,
                )
            return self._jwks

    def verify(self, token: str) -> Identity:
        """Verifies `token`; raises `TesseraAuthError` when it is not acceptable."""
        try:
            header = jwt.get_unverified_header(token)
            if str(header.get("typ", "")).lower() not in ("at+jwt", "application/at+jwt"):
                raise TesseraAuthError.invalid_token("not an access token")
            key = self._jwks_client().get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=ALGORITHMS,
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.PyJWKClientConnectionError as e:
            raise TesseraAuthError(503, "unavailable", "the signing keys cannot be fetched") from e
        except jwt.PyJWTError as e:
            raise TesseraAuthError.invalid_token(f"the access token is not valid: {e}") from e
        return Identity(
            sub=claims["sub"],
            tid=claims.get("tid", ""),
            roles=list(claims.get("roles", [])),
            scope=claims.get("scope", ""),
            claims=claims,
        )

    # A plain `def`: FastAPI runs it in its thread pool, where the blocking key fetches
    # cannot stall the event loop.
    def __call__(self, request: Request) -> Identity:
        token = extract_token(request.headers, self.cookie_name)
        if token is None:
            raise TesseraAuthError.unauthenticated()
        return self.verify(token)

    def require(self, permission: str) -> Callable[[Identity], Identity]:
        """A dependency admitting only callers whose token holds `permission`."""
        _wanted_permission(permission)  # a typo fails at start-up, not on each request

        def guard(identity: Identity = Depends(self)) -> Identity:
            if not identity.has_permission(permission):
                raise TesseraAuthError(
                    403, "forbidden", f"this needs the permission `{permission}`"
                )
            return identity

        return guard
