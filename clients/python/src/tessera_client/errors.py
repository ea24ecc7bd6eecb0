"""What can go wrong: a request refused (`AuthError`, answered as a problem) and a verifier
that cannot start (`SetupError`).

The codes are Tessera's own, the same the Rust SDK answers with, so a platform's logs and
frontends see one vocabulary whichever service refused the request.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, Dict, Optional


class AuthError(Exception):
    """A request that is not authenticated or not allowed. Safe to log and to answer: it
    never carries token content."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail

    @classmethod
    def missing(cls) -> "AuthError":
        """No credential at all."""
        return cls(401, "unauthenticated", "authentication required")

    @classmethod
    def invalid_credential(cls, detail: str) -> "AuthError":
        """A credential present but unusable (malformed header, cookie sent twice…)."""
        return cls(401, "invalid_credential", detail)

    @classmethod
    def invalid(cls, code: str, detail: str) -> "AuthError":
        """A token that failed verification, with the verification rule's code."""
        return cls(401, code, detail)

    @classmethod
    def revoked(cls) -> "AuthError":
        return cls(401, "token_revoked", "token revoked")

    @classmethod
    def inactive(cls) -> "AuthError":
        return cls(401, "token_inactive", "token not active")

    @classmethod
    def csrf(cls) -> "AuthError":
        return cls(403, "csrf_failed", "CSRF check failed")

    @classmethod
    def forbidden(cls, permission: str) -> "AuthError":
        return cls(403, "forbidden", f"missing permission `{permission}`")

    @classmethod
    def unavailable(cls) -> "AuthError":
        """Tessera could not be asked: refused, never allowed."""
        return cls(503, "verification_unavailable", "token verification unavailable")

    def challenge(self) -> Optional[str]:
        """The `WWW-Authenticate` challenge (RFC 6750 §3) for 401 and permission 403 answers."""
        if self.code == "unauthenticated":
            return "Bearer"
        if self.code == "forbidden":
            return 'Bearer error="insufficient_scope"'
        if self.status == 401:
            return 'Bearer error="invalid_token"'
        return None

    def problem(self) -> Dict[str, Any]:
        """The RFC 9457 body."""
        return {
            "type": f"urn:tessera:problem:{self.code}",
            "title": HTTPStatus(self.status).phrase,
            "status": self.status,
            "code": self.code,
            "detail": self.detail,
        }

    def headers(self) -> Dict[str, str]:
        """Headers of the problem answer: content type, `no-store`, and the challenge."""
        headers = {
            "content-type": "application/problem+json",
            "cache-control": "no-store",
        }
        challenge = self.challenge()
        if challenge is not None:
            headers["www-authenticate"] = challenge
        return headers


class SetupError(Exception):
    """A verifier that could not start: it would accept what it should not, so it does not
    start at all."""
