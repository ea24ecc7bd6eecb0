"""Introspection mode: each new token is checked by Tessera (RFC 7662), so a revocation counts
at once, at the price of a call per new token. Active answers are reused for a few seconds
(never past `exp`). When Tessera cannot answer, a circuit breaker stops asking for a while and
every token is refused meanwhile: the mode fails closed.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, Optional, Tuple

from ._http import FetchError, request_json
from .errors import AuthError
from .extract import MAX_TOKEN_BYTES

__all__ = ["Introspector"]

# Consecutive failures that open the circuit, and how long it stays open.
FAILURES_TO_OPEN = 5
OPEN_FOR = 10.0
CACHE_CAPACITY = 10_000


class Introspector:
    """Asks Tessera about tokens."""

    def __init__(
        self,
        endpoint: str,
        authorization: str,
        *,
        issuer: str,
        audience: str,
        ttl: float = 5.0,
        timeout: float = 10.0,
    ) -> None:
        self._endpoint = endpoint
        self._authorization = authorization
        self._issuer = issuer
        self._audience = audience
        self._ttl = ttl
        self._timeout = timeout
        self._cache: Dict[str, Tuple[Dict[str, Any], float]] = {}
        self._failures = 0
        self._open_until: Optional[float] = None
        self._lock = threading.Lock()

    def _admit(self) -> None:
        with self._lock:
            if self._open_until is None:
                return
            if time.monotonic() < self._open_until:
                raise AuthError.unavailable()
            # Half-open: this call is the trial; others wait for its outcome by the timer.
            self._open_until = time.monotonic() + self._timeout

    def _record(self, ok: bool) -> None:
        with self._lock:
            if ok:
                self._failures = 0
                self._open_until = None
                return
            self._failures += 1
            if self._failures >= FAILURES_TO_OPEN or self._open_until is not None:
                self._open_until = time.monotonic() + OPEN_FOR

    def verify(self, token: str) -> Dict[str, Any]:
        """The token's claims if Tessera says it is active now."""
        if len(token.encode()) > MAX_TOKEN_BYTES:
            raise AuthError.invalid("token_too_large", "token too large")
        now = time.time()
        cached = self._cache.get(token)
        if cached is not None and now < cached[1] and now < cached[0].get("exp", 0):
            return cached[0]
        self._admit()
        try:
            answer = request_json(
                self._endpoint,
                authorization=self._authorization,
                form={"token": token, "token_type_hint": "access_token"},
                timeout=self._timeout,
            )
        except FetchError:
            self._record(False)
            raise AuthError.unavailable() from None
        self._record(True)
        if answer.get("active") is not True:
            raise AuthError.inactive()
        # Tessera checked its own rules; these are this service's.
        if answer.get("iss") != self._issuer:
            raise AuthError.invalid("wrong_issuer", "the token was issued by another issuer")
        audience = answer.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if self._audience not in audiences:
            raise AuthError.invalid("wrong_audience", "the token is for another audience")
        until = min(now + self._ttl, float(answer.get("exp", now)))
        with self._lock:
            if len(self._cache) >= CACHE_CAPACITY:
                self._cache = {k: v for k, v in self._cache.items() if v[1] > now}
                if len(self._cache) >= CACHE_CAPACITY * 3 // 4:
                    self._cache.clear()
            self._cache[token] = (answer, until)
        return answer
