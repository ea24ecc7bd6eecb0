"""A Starlette/ASGI middleware authenticating every HTTP request of the app it wraps.

    app = TesseraMiddleware(app, verifier, exempt=("/healthz",), require="reports:read")

A verified caller reaches the app with its `Identity` in `scope["state"]["tessera_identity"]`
(`request.state.tessera_identity` in Starlette and FastAPI); anyone else gets Tessera's
problem answer (401, 403 or 503). WebSocket and lifespan traffic pass through untouched.
Needs no framework: any ASGI 3 app works.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable, Iterable, MutableMapping, Optional

import asyncio
import functools

from .errors import AuthError
from .verifier import Verifier, check_permission_name

__all__ = ["TesseraMiddleware"]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


async def send_problem(send: Send, error: AuthError) -> None:
    """Answers `error` as problem+json on a raw ASGI `send`."""
    body = json.dumps(error.problem()).encode()
    headers = [(k.encode(), v.encode()) for k, v in error.headers().items()]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class TesseraMiddleware:
    """Authenticates every HTTP request (except `exempt` path prefixes); with `require`, also
    checks one permission."""

    def __init__(
        self,
        app: Callable[[Scope, Receive, Send], Awaitable[None]],
        verifier: Verifier,
        *,
        exempt: Iterable[str] = (),
        require: Optional[str] = None,
    ) -> None:
        self.app = app
        self.verifier = verifier
        self.exempt = tuple(exempt)
        self.require = check_permission_name(require) if require is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt or ("\0",)):
            await self.app(scope, receive, send)
            return
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        try:
            # Off the event loop: a key fetch or an introspection call blocks.
            authenticate = functools.partial(
                self.verifier.authenticate, scope["method"], headers
            )
            identity = await asyncio.get_running_loop().run_in_executor(None, authenticate)
            if self.require is not None:
                identity.require(self.require)
        except AuthError as error:
            await send_problem(send, error)
            return
        scope.setdefault("state", {})["tessera_identity"] = identity
        await self.app(scope, receive, send)
