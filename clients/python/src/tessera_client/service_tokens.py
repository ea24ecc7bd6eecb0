"""Service-to-service calls: a token from Tessera's client-credentials grant
(`POST /oauth2/token`), cached and reused until shortly before it expires.

    tokens = ServiceTokens("https://auth.example.com", client_id, client_secret,
                           scope="reports:write")
    headers = {"Authorization": f"Bearer {tokens.token()}"}
"""

from __future__ import annotations

import threading
import time
from typing import Optional

from ._http import FetchError, basic_credentials, request_json

__all__ = ["ServiceTokens"]


class ServiceTokens:
    """A thread-safe cache of one service account's access token."""

    def __init__(
        self,
        issuer: str,
        client_id: str,
        client_secret: str,
        *,
        scope: Optional[str] = None,
        token_endpoint: Optional[str] = None,
        renew_before: float = 60.0,
        timeout: float = 10.0,
    ) -> None:
        """`renew_before`: seconds before expiry a new token is fetched (at most half of the
        token's lifetime), so a token handed out is never about to expire in flight."""
        self._endpoint = token_endpoint or issuer.rstrip("/") + "/oauth2/token"
        self._authorization = basic_credentials(client_id, client_secret)
        self._scope = scope
        self._renew_before = renew_before
        self._timeout = timeout
        self._token: Optional[str] = None
        self._renew_at = 0.0
        self._lock = threading.Lock()
        self.fetches = 0
        """How many tokens were fetched (for metrics and tests)."""

    def token(self) -> str:
        """A valid access token, fetched only when none is cached or it is due for renewal.
        Raises `FetchError` when Tessera refuses or cannot be reached."""
        with self._lock:
            if self._token is not None and time.monotonic() < self._renew_at:
                return self._token
            form = {"grant_type": "client_credentials"}
            if self._scope:
                form["scope"] = self._scope
            answer = request_json(
                self._endpoint,
                authorization=self._authorization,
                form=form,
                timeout=self._timeout,
            )
            token, lifetime = answer.get("access_token"), answer.get("expires_in")
            if not isinstance(token, str) or not isinstance(lifetime, int):
                raise FetchError(f"{self._endpoint} answered without a token")
            self.fetches += 1
            self._token = token
            self._renew_at = time.monotonic() + lifetime - min(self._renew_before, lifetime / 2)
            return token

    def invalidate(self) -> None:
        """Forgets the cached token (after a 401 from the called service, say)."""
        with self._lock:
            self._token = None
