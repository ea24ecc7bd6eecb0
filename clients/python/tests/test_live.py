"""The package against a live Tessera (see conftest.py): the shared request table through the
FastAPI example and the ASGI middleware, a revoked session refused within a second, permissions
from real roles, CSRF on real cookies, introspection, service tokens, and failing closed."""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, List

import pytest
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tessera_client import AuthError, Flags, ServiceTokens, SetupError, Verifier, has_permission
from tessera_client.asgi import TesseraMiddleware

from conftest import Live, Proxy

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "fastapi"
sys.path.insert(0, str(EXAMPLE))
sys.dont_write_bytecode = True
import service  # noqa: E402  (the FastAPI example, built on this package)


@pytest.fixture(scope="module")
def verifier(live: Live) -> Iterator[Verifier]:
    made = Verifier.start(
        live.issuer, live.audience, client_id=live.client_id, client_secret=live.client_secret
    )
    yield made
    made.close()


@pytest.fixture(scope="module")
def example(verifier: Verifier) -> Iterator[TestClient]:
    with TestClient(service.create_app(verifier)) as client:
        yield client


def table(live: Live) -> Dict[str, Any]:
    if not live.table:
        pytest.skip("no request table given")
    return json.loads(Path(live.table).read_text())


def check_answer(case: Dict[str, Any], status: int, headers: Any, body: Any) -> None:
    context = f"{case['name']}: {status} {body}"
    assert status == case["status"], context
    if "body" in case:
        assert body == case["body"], context
        return
    code = case["code"]
    assert headers["content-type"] == "application/problem+json", context
    assert headers["cache-control"] == "no-store", context
    assert body["code"] == code and body["status"] == status, context
    assert body["type"] == f"urn:tessera:problem:{code}", context
    challenge = (
        "Bearer"
        if code == "unauthenticated"
        else 'Bearer error="invalid_token"'
        if status == 401
        else 'Bearer error="insufficient_scope"'
    )
    assert headers["www-authenticate"] == challenge, context


def test_the_fastapi_example_answers_the_shared_table(live: Live, example: TestClient) -> None:
    cases = table(live)
    for case in cases["requests"]:
        response = example.request(case["method"], case["path"], headers=[tuple(h) for h in case["headers"]])
        check_answer(case, response.status_code, response.headers, response.json())
    for scope, wanted, allowed in cases["permissions"]:
        assert has_permission(scope, wanted) is allowed, (scope, wanted)


def starlette_app(verifier: Verifier) -> Starlette:
    """A plain Starlette app: the middleware authenticates, the routes read the identity."""

    async def whoami(request: Request) -> JSONResponse:
        identity = request.state.tessera_identity
        return JSONResponse({"sub": identity.sub, "tid": identity.tid, "roles": identity.roles})

    async def reports(request: Request) -> JSONResponse:
        identity = request.state.tessera_identity
        try:
            identity.require("reports:write")
        except AuthError as e:
            return JSONResponse(e.problem(), status_code=e.status, headers=e.headers())
        return JSONResponse({"created_by": identity.sub, "tid": identity.tid}, status_code=201)

    async def health(_request: Request) -> JSONResponse:
        return JSONResponse(dict(verifier.health()))

    app = Starlette(
        routes=[
            Route("/whoami", whoami),
            Route("/reports", reports, methods=["POST"]),
            Route("/healthz", health),
        ]
    )
    return TesseraMiddleware(app, verifier, exempt=("/healthz",))  # type: ignore[return-value]


def test_the_asgi_middleware_answers_the_shared_table(live: Live, verifier: Verifier) -> None:
    cases = table(live)
    with TestClient(starlette_app(verifier)) as client:
        for case in cases["requests"]:
            response = client.request(case["method"], case["path"], headers=[tuple(h) for h in case["headers"]])
            check_answer(case, response.status_code, response.headers, response.json())
        assert client.get("/healthz").status_code == 200, "exempt paths pass unauthenticated"


def wait_until_live(verifier: Verifier) -> None:
    deadline = time.monotonic() + 5
    while verifier.revocations_live is not True:
        assert time.monotonic() < deadline, "the feed never caught up"
        time.sleep(0.02)


def test_a_revoked_session_is_refused_within_a_second(live: Live, verifier: Verifier, example: TestClient) -> None:
    tokens, _ = live.login("ada@example.com")
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    assert example.get("/whoami", headers=bearer).status_code == 200
    wait_until_live(verifier)

    revoked_at = time.monotonic()
    live.logout(tokens["access_token"])
    while True:
        response = example.get("/whoami", headers=bearer)
        if response.status_code == 401:
            assert response.json()["code"] == "token_revoked"
            break
        assert response.status_code == 200
        assert time.monotonic() - revoked_at < 1.0, "still accepted after a second"
        time.sleep(0.01)
    elapsed = time.monotonic() - revoked_at
    assert elapsed < 1.0, f"refused only after {elapsed:.3f} s"
    health = example.get("/healthz").json()
    assert health["revocations_live"] is True and health["revocations_held"] >= 1


def test_a_verifier_started_after_a_revocation_refuses_it_from_the_first_request(live: Live) -> None:
    tokens, _ = live.login("ada@example.com")
    live.logout(tokens["access_token"])
    late = Verifier.start(live.issuer, live.audience, client_id=live.client_id, client_secret=live.client_secret)
    try:
        with pytest.raises(AuthError) as refused:
            late.verify(tokens["access_token"])
        assert refused.value.code == "token_revoked"
    finally:
        late.close()


def test_permissions_come_from_the_roles_tessera_grants(live: Live, example: TestClient) -> None:
    def bearer(email: str) -> Dict[str, str]:
        return {"Authorization": f"Bearer {live.login(email)[0]['access_token']}"}

    admin, user, viewer = bearer("root@example.com"), bearer("ada@example.com"), bearer("vic@example.com")
    assert example.post("/reports", headers=admin).status_code == 201
    assert example.get("/admin/stats", headers=admin).status_code == 200
    assert example.get("/admin/stats", headers=viewer).status_code == 200, "*:read covers stats:read"
    for method, path, headers, status, code in [
        ("POST", "/reports", user, 403, "forbidden"),
        ("POST", "/reports", viewer, 403, "forbidden"),
        ("POST", "/reports", {}, 401, "unauthenticated"),
        ("POST", "/reports", {"Authorization": "Bearer not.a.token"}, 401, "token_malformed"),
        ("GET", "/admin/stats", user, 403, "forbidden"),
    ]:
        response = example.request(method, path, headers=headers)
        assert (response.status_code, response.json()["code"]) == (status, code), (method, path)


def cookie_jar(set_cookies: List[str]) -> Dict[str, str]:
    jar = {}
    for header in set_cookies:
        name, _, rest = header.partition("=")
        jar[name.strip()] = rest.split(";", 1)[0]
    return jar


def test_cookie_requests_from_a_real_cookie_login_need_the_csrf_proof(live: Live, example: TestClient) -> None:
    _, set_cookies = live.login("root@example.com", delivery="cookie")
    jar = cookie_jar(set_cookies)
    assert {"access_token", "csrf_token"} <= set(jar), jar
    cookie = f"access_token={jar['access_token']}; csrf_token={jar['csrf_token']}"
    same_site = {"cookie": cookie, "origin": "http://testserver"}
    assert example.get("/whoami", headers={"cookie": cookie}).status_code == 200, "safe methods need no proof"
    refused = example.post("/reports", headers=same_site)
    assert (refused.status_code, refused.json()["code"]) == (403, "csrf_failed")
    forged = example.post("/reports", headers={**same_site, "x-csrf-token": "guess"})
    assert forged.status_code == 403
    foreign = example.post("/reports", headers={**same_site, "origin": "https://evil.example", "x-csrf-token": jar["csrf_token"]})
    assert foreign.status_code == 403
    allowed = example.post("/reports", headers={**same_site, "x-csrf-token": jar["csrf_token"]})
    assert allowed.status_code == 201, allowed.json()


def test_introspection_sees_a_logout_at_once_and_fails_closed(live: Live) -> None:
    proxy = Proxy(live.issuer)
    asking = Verifier.start(
        live.issuer, live.audience, client_id=live.client_id, client_secret=live.client_secret,
        introspection=True, introspection_cache=0, base_url=proxy.url,
    )
    assert asking.revocations_live is None
    tokens, _ = live.login("root@example.com")
    assert asking.verify(tokens["access_token"])["sid"] == tokens["session_id"]
    with pytest.raises(AuthError) as inactive:
        asking.verify("garbage")
    assert inactive.value.code == "token_inactive"
    live.logout(tokens["access_token"])
    with pytest.raises(AuthError) as revoked:
        asking.verify(tokens["access_token"])
    assert revoked.value.code == "token_inactive"

    other, _ = live.login("root@example.com")
    proxy.cut()
    for _ in range(7):
        with pytest.raises(AuthError) as down:
            asking.verify(other["access_token"])
        assert down.value.code == "verification_unavailable"


def test_a_verifier_that_cannot_read_the_feed_does_not_start(live: Live) -> None:
    with pytest.raises(SetupError, match="revocation feed"):
        Verifier.start(live.issuer, live.audience, client_id=live.client_id, client_secret="wrong secret")
    proxy = Proxy(live.issuer)
    proxy.cut()
    with pytest.raises(SetupError, match="discovery"):
        Verifier.start(live.issuer, live.audience, base_url=proxy.url)
    with pytest.raises(SetupError, match="issuer"):
        Verifier.start(live.issuer + "/other", live.audience, base_url=live.issuer)


def test_service_tokens_come_from_the_client_credentials_grant_and_are_cached(live: Live, verifier: Verifier) -> None:
    tokens = ServiceTokens(live.issuer, live.client_id, live.client_secret)
    first = tokens.token()
    assert tokens.token() == first and tokens.fetches == 1
    claims = verifier.verify(first)
    assert claims["sub"] == live.client_id and claims.get("sid") is None


def _send(live: Live, method: str, path: str, token: str, body: Any = None) -> Any:
    request = urllib.request.Request(
        live.issuer + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"null")


def test_flags_are_read_from_memory_and_follow_changes_through_the_stream(live: Live) -> None:
    tokens = ServiceTokens(live.issuer, live.client_id, live.client_secret, scope="flags:read")
    flags = Flags(live.issuer, tokens=tokens, context={"targetingKey": "worker-1"})
    changes: List[bool] = []
    flags.on_change(lambda: changes.append(flags.bool("beta_banner", True)))
    flags.start()
    try:
        assert flags.bool("beta_banner", True) is False
        assert flags.string("beta_banner", "fallback") == "fallback", "getters never coerce"
        assert flags.number("beta_banner", 7.0) == 7.0 and flags.object("beta_banner") is None
        assert flags.bool("no_such_flag", True) is True
        assert flags.refresh() is False, "nothing changed: a 304"
        assert flags.refreshes == 1 and changes == [False]
        deadline = time.monotonic() + 10
        while not flags.live:
            assert time.monotonic() < deadline, "the change stream never opened"
            time.sleep(0.02)

        # The tenant's administrator turns the flag on for the service's tenant.
        root = live.login("root@example.com")[0]["access_token"]
        me = _send(live, "GET", "/api/v1/auth/me", root)
        tenant = me.get("tenant_id") or me["user"]["tenant_id"]
        _send(live, "PUT", f"/api/v1/admin/flags/beta_banner/tenants/{tenant}", root, {"value": True})
        deadline = time.monotonic() + 5
        while not flags.bool("beta_banner", False):
            assert time.monotonic() < deadline, "the change never arrived"
            time.sleep(0.02)
        assert changes == [False, True]
        assert flags.health() == {"flags_live": True, "flags_stale": False, "flags_held": flags.health()["flags_held"]}
        assert flags.health()["flags_held"] >= 1
    finally:
        flags.stop()


def test_flags_need_exactly_one_credential(live: Live) -> None:
    with pytest.raises(SetupError):
        Flags(live.issuer)
    tokens = ServiceTokens(live.issuer, live.client_id, live.client_secret)
    with pytest.raises(SetupError):
        Flags(live.issuer, tokens=tokens, bearer="x")
