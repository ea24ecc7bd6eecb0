"""Tessera's signing keys, read from the JWKS its metadata names, cached by `kid`.

The set is fetched again in the background of requests every `refresh` seconds (so a retired
key stops being trusted) and at once when a token names an unknown `kid` (a rotation), but
never more often than `min_refetch`: tokens with invented key ids cannot make a service
hammer Tessera. Each key's algorithm is fixed by the key itself (Ed25519 → EdDSA, P-256 →
ES256); a token claiming another is refused. Symmetric keys are never trusted.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, Optional, Tuple

import jwt

from ._http import FetchError, request_json

__all__ = ["KeyCache"]


def _algorithm(jwk: Dict[str, Any]) -> Optional[str]:
    """The one algorithm a JWK may verify, from its type and curve."""
    kty, crv = jwk.get("kty"), jwk.get("crv")
    if kty == "OKP" and crv == "Ed25519":
        return "EdDSA"
    if kty == "EC" and crv == "P-256":
        return "ES256"
    return None


class KeyCache:
    """Public keys by `kid`, each with its algorithm."""

    def __init__(
        self,
        jwks_uri: str,
        *,
        min_refetch: float = 5.0,
        refresh: float = 300.0,
        timeout: float = 10.0,
    ) -> None:
        self._uri = jwks_uri
        self._min_refetch = min_refetch
        self._refresh = refresh
        self._timeout = timeout
        self._keys: Dict[str, Tuple[Any, str]] = {}
        self._fetched_at = float("-inf")
        self._lock = threading.Lock()

    def load(self) -> None:
        """Fetches the set now (raises `FetchError`)."""
        jwks = request_json(self._uri, timeout=self._timeout)
        keys: Dict[str, Tuple[Any, str]] = {}
        for jwk in jwks.get("keys", []):
            if not isinstance(jwk, dict) or jwk.get("use", "sig") != "sig":
                continue
            algorithm = _algorithm(jwk)
            kid = jwk.get("kid")
            if algorithm is None or not isinstance(kid, str):
                continue
            if jwk.get("alg", algorithm) != algorithm:
                continue
            try:
                key = jwt.PyJWK(jwk, algorithm).key
            except jwt.PyJWTError:
                continue
            keys[kid] = (key, algorithm)
        with self._lock:
            self._keys = keys
            self._fetched_at = time.monotonic()

    def _maybe_refetch(self, force: bool) -> bool:
        """Fetches again when due (`force`: a `kid` is unknown); whether it did."""
        with self._lock:
            age = time.monotonic() - self._fetched_at
            due = age >= self._refresh or (force and age >= self._min_refetch)
            if not due:
                return False
            # Claim the slot, so concurrent requests do not all fetch.
            self._fetched_at = time.monotonic()
        try:
            self.load()
        except FetchError:
            return False
        return True

    def find(self, kid: Optional[str]) -> Optional[Tuple[Any, str]]:
        """The key and algorithm for `kid`, fetching the set again when it is unknown (at
        most every `min_refetch` seconds) or due for refresh."""
        self._maybe_refetch(force=False)
        if kid is not None and kid in self._keys:
            return self._keys[kid]
        if self._maybe_refetch(force=True):
            return self._keys.get(kid) if kid is not None else None
        return None

    def refresh(self) -> bool:
        """Fetches now, ignoring the intervals; whether the set changed."""
        before = set(self._keys)
        self.load()
        return set(self._keys) != before
