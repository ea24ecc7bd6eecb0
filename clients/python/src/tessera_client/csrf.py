"""The CSRF rule for cookie-authenticated requests, the same as Tessera's own.

A browser attaches cookies to requests any site makes, so an unsafe request (anything but
GET, HEAD, OPTIONS, TRACE) authenticated by the access cookie must also prove that one of the
platform's own pages made it:

1. the CSRF header (`X-CSRF-Token`), sent exactly once, equal to the CSRF cookie, sent exactly
   once (only pages of the cookie's site can read it);
2. the request's origin (`Origin`, or the origin of `Referer` when a browser sent no `Origin`)
   is allowed: one of the configured origins or, with none configured, the origin of the
   request's own `Host`. A request naming neither is refused.

Requests authenticated by `Authorization: Bearer` need none of this.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Iterable, List, Optional, Tuple
from urllib.parse import urlsplit

from .errors import AuthError
from .extract import cookie_value

__all__ = ["SAFE_METHODS", "CsrfPolicy", "request_origin"]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def request_origin(headers: Iterable[Tuple[str, str]]) -> Optional[str]:
    """The origin a request names: `Origin` as sent (`null` included, which no list allows),
    else the origin of `Referer` serialized as browsers serialize `Origin`; `None` when
    neither is usable."""
    headers = list(headers)
    for name, value in headers:
        if name.lower() == "origin":
            return value
    for name, value in headers:
        if name.lower() == "referer":
            try:
                parts = urlsplit(value)
                port = parts.port
            except ValueError:
                return None
            scheme = parts.scheme.lower()
            if scheme not in _DEFAULT_PORTS or not parts.hostname:
                return None
            origin = f"{scheme}://{parts.hostname.lower()}"
            if port is not None and port != _DEFAULT_PORTS[scheme]:
                origin += f":{port}"
            return origin
    return None


@dataclass
class CsrfPolicy:
    """Where the proof is read and which origins may send one."""

    cookie_name: str = "csrf_token"
    header_name: str = "x-csrf-token"
    allowed_origins: List[str] = field(default_factory=list)
    """Serialized origins (`https://app.example.com`). Empty: only the request's own host."""

    def allows(self, origin: str, headers: Iterable[Tuple[str, str]]) -> bool:
        """Whether `origin` may send cookie requests: listed, or, with no list, the origin
        of the request's own `Host` (either scheme: the service may sit behind TLS)."""
        if self.allowed_origins:
            return origin in self.allowed_origins
        host = next((v.lower() for k, v in headers if k.lower() == "host"), None)
        for scheme in ("https://", "http://"):
            if origin.startswith(scheme):
                return host is not None and origin[len(scheme):] == host
        return False

    def check(self, headers: Iterable[Tuple[str, str]]) -> None:
        """Raises `AuthError.csrf()` unless an unsafe cookie request carries the proof."""
        headers = list(headers)
        origin = request_origin(headers)
        if origin is None or not self.allows(origin, headers):
            raise AuthError.csrf()
        name = self.header_name.lower()
        sent = [v for k, v in headers if k.lower() == name]
        if len(sent) != 1:
            raise AuthError.csrf()
        try:
            cookie = cookie_value(headers, self.cookie_name)
        except AuthError:
            raise AuthError.csrf() from None
        if not cookie or not hmac.compare_digest(sent[0].encode(), cookie.encode()):
            raise AuthError.csrf()
