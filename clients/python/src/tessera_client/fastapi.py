"""FastAPI integration: a dependency giving the verified caller, permission guards, and the
exception handler answering refusals as Tessera's problems.

    from tessera_client import Verifier
    from tessera_client.fastapi import TesseraAuth, install

    verifier = Verifier.start(issuer=..., audience=..., client_id=..., client_secret=...)
    auth = TesseraAuth(verifier)
    install(app)          # AuthError -> problem+json

    @app.get("/whoami")
    def whoami(identity: Identity = Depends(auth)): ...

    @app.post("/reports")
    def create(identity: Identity = Depends(auth.require("reports:write"))): ...
"""

from __future__ import annotations

from typing import Any, Callable

from fastapi import Depends, Request
from fastapi.responses import JSONResponse

from .errors import AuthError
from .verifier import Identity, Verifier, check_permission_name

__all__ = ["TesseraAuth", "install", "problem_response"]


def problem_response(_request: Any, error: Exception) -> JSONResponse:
    """The exception handler for `AuthError`."""
    assert isinstance(error, AuthError)
    return JSONResponse(
        error.problem(),
        status_code=error.status,
        media_type="application/problem+json",
        headers=error.headers(),
    )


def install(app: Any) -> None:
    """Registers `problem_response` for `AuthError` on a FastAPI (or Starlette) app."""
    app.add_exception_handler(AuthError, problem_response)


class TesseraAuth:
    """`Depends(auth)` gives an `Identity`; `Depends(auth.require("resource:action"))` also
    checks a permission. A caller already verified by `TesseraMiddleware` is not verified
    twice."""

    def __init__(self, verifier: Verifier) -> None:
        self.verifier = verifier

    # A plain `def`: FastAPI runs it in its thread pool, where a key fetch or an
    # introspection call cannot stall the event loop.
    def __call__(self, request: Request) -> Identity:
        done = request.scope.get("state", {}).get("tessera_identity")
        if isinstance(done, Identity):
            return done
        return self.verifier.authenticate(request.method, request.headers.items())

    def require(self, permission: str) -> Callable[..., Identity]:
        """A dependency admitting only callers whose token holds `permission`."""
        check_permission_name(permission)

        def guard(identity: Identity = Depends(self)) -> Identity:
            return identity.require(permission)

        return guard
