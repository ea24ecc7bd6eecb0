"""Where a request's token is read from, in Tessera's order: `Authorization: Bearer`, then
the access-token cookie. Never the query string: tokens there end up in logs (real-time
connections use cookies or Tessera's single-use tickets instead).

A credential that is present but unusable is an error, not "no credential": falling back
would let a malformed header hide behind a cookie.
"""

from __future__ import annotations

from typing import Iterable, List, Optional, Tuple

from .errors import AuthError

__all__ = ["MAX_TOKEN_BYTES", "Credential", "cookie_value", "extract_token"]

# Longer than any token Tessera issues.
MAX_TOKEN_BYTES = 8 * 1024
# Trimmed around cookie names and values (ASCII whitespace only, as Tessera does).
_ASCII_SPACE = " \t\n\r\f"


class Credential:
    """A token and whether it came from the cookie (which makes CSRF rules apply)."""

    __slots__ = ("token", "via_cookie")

    def __init__(self, token: str, via_cookie: bool) -> None:
        self.token = token
        self.via_cookie = via_cookie

    def __repr__(self) -> str:  # never the token itself
        return f"Credential(via_cookie={self.via_cookie}, token=[redacted])"


def _checked(value: str) -> str:
    if len(value.encode()) > MAX_TOKEN_BYTES:
        raise AuthError.invalid_credential("credential too large")
    return value


def _values(headers: Iterable[Tuple[str, str]], name: str) -> List[str]:
    return [value for key, value in headers if key.lower() == name]


def cookie_value(headers: Iterable[Tuple[str, str]], name: str) -> Optional[str]:
    """The value of cookie `name`: a name sent twice is an error, an empty value is absent,
    surrounding quotes are dropped. `headers` are `(name, value)` pairs."""
    seen = False
    found = None
    for header in _values(headers, "cookie"):
        for pair in header.split(";"):
            key, sep, value = pair.partition("=")
            if not sep or key.strip(_ASCII_SPACE) != name:
                continue
            if seen:
                raise AuthError.invalid_credential("ambiguous cookie")
            seen = True
            value = value.strip(_ASCII_SPACE).strip('"')
            if value and value.isascii():
                found = _checked(value)
    return found


def extract_token(
    headers: Iterable[Tuple[str, str]], cookie_name: str = "access_token"
) -> Optional[Credential]:
    """The request's credential, or `None` when it carries none. `headers` are `(name, value)`
    pairs, repeated names kept (ASGI's `scope["headers"]` decoded as latin-1, or Starlette's
    `request.headers.items()`)."""
    headers = list(headers)
    authorization = _values(headers, "authorization")
    if authorization:
        if len(authorization) > 1 or not authorization[0].isascii():
            raise AuthError.invalid_credential("malformed Authorization header")
        scheme, sep, token = authorization[0].partition(" ")
        token = token.strip(" ")
        if not sep or scheme.lower() != "bearer" or not token or " " in token:
            raise AuthError.invalid_credential("malformed Authorization header")
        return Credential(_checked(token), via_cookie=False)
    value = cookie_value(headers, cookie_name)
    if value is not None:
        return Credential(value, via_cookie=True)
    return None
