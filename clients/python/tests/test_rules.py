"""The package's rules without a Tessera: permissions, token extraction, CSRF, the event-stream
parser, revocation matching, the key cache, introspection's circuit breaker and service-token
caching (against local stubs)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any, Dict, List, Tuple

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tessera_client import AuthError, CsrfPolicy, ServiceTokens, Verifier, extract_token, has_permission
from tessera_client.introspection import FAILURES_TO_OPEN, Introspector
from tessera_client.keys import KeyCache
from tessera_client.revocations import RevocationSet, SseParser
from tessera_client._http import FetchError, basic_credentials

# The same rules the Rust SDK and the examples are held to (crates/tessera/tests/api/interop.rs).
PERMISSION_RULES = [
    ("reports:write", "reports:write", True),
    ("openid reports:write", "reports:write", True),
    ("reports:read", "reports:write", False),
    ("", "reports:write", False),
    ("reports:*", "reports:write", True),
    ("*:read", "users:read", True),
    ("*:read", "users:write", False),
    ("*:*", "users:delete", True),
    ("users:read", "users:*", False),
    ("users:*", "users:*", True),
    ("*:read", "*:*", False),
    ("*:*", "*:*", True),
    ("Reports:write", "reports:write", False),
    ("reports:write", "not a permission", False),
]


@pytest.mark.parametrize("scope,wanted,allowed", PERMISSION_RULES)
def test_permissions_follow_tessera_s_wildcard_rule(scope: str, wanted: str, allowed: bool) -> None:
    assert has_permission(scope, wanted) is allowed


def code_of(call: Any) -> str:
    with pytest.raises(AuthError) as raised:
        call()
    return raised.value.code


EXTRACTION = [
    ([("authorization", "Bearer abc")], ("abc", False)),
    ([("Authorization", "bearer  abc ")], ("abc", False)),
    ([("cookie", "theme=dark; access_token=abc")], ("abc", True)),
    ([("cookie", 'access_token="abc"')], ("abc", True)),
    ([("authorization", "Bearer abc"), ("cookie", "access_token=zzz")], ("abc", False)),
    ([("cookie", "access_token=")], None),
    ([], None),
]


@pytest.mark.parametrize("headers,expected", EXTRACTION)
def test_tokens_come_from_the_bearer_header_then_the_cookie(headers: List[Tuple[str, str]], expected: Any) -> None:
    found = extract_token(headers)
    assert (None if found is None else (found.token, found.via_cookie)) == expected
    if found is not None:
        assert "abc" not in repr(found)


@pytest.mark.parametrize(
    "headers",
    [
        [("authorization", "Basic dXNlcjpwdw=="), ("cookie", "access_token=abc")],
        [("authorization", "Bearer a b")],
        [("authorization", "Bearer")],
        [("authorization", "Bearer a"), ("authorization", "Bearer b")],
        [("cookie", "access_token=a; access_token=b")],
        [("cookie", "access_token=a"), ("cookie", "access_token=b")],
        [("authorization", "Bearer " + "a" * 9000)],
    ],
)
def test_unusable_credentials_are_refused_rather_than_skipped(headers: List[Tuple[str, str]]) -> None:
    assert code_of(lambda: extract_token(headers)) == "invalid_credential"


COOKIES = ("cookie", "access_token=tok; csrf_token=proof")


@pytest.mark.parametrize(
    "headers,ok",
    [
        ([COOKIES, ("x-csrf-token", "proof"), ("origin", "https://app.example"), ("host", "app.example")], True),
        ([COOKIES, ("x-csrf-token", "proof"), ("referer", "https://app.example/page"), ("host", "app.example")], True),
        ([COOKIES, ("x-csrf-token", "proof"), ("host", "app.example")], False),
        ([COOKIES, ("x-csrf-token", "proof"), ("origin", "https://evil.example"), ("host", "app.example")], False),
        ([COOKIES, ("x-csrf-token", "proof"), ("origin", "null"), ("host", "app.example")], False),
        ([COOKIES, ("x-csrf-token", "other"), ("origin", "https://app.example"), ("host", "app.example")], False),
        ([COOKIES, ("origin", "https://app.example"), ("host", "app.example")], False),
        ([COOKIES, ("x-csrf-token", "proof"), ("x-csrf-token", "proof"), ("origin", "https://app.example"), ("host", "app.example")], False),
        ([("cookie", "access_token=tok"), ("x-csrf-token", ""), ("origin", "https://app.example"), ("host", "app.example")], False),
    ],
)
def test_cookie_requests_need_the_double_submit_and_an_allowed_origin(headers: List[Tuple[str, str]], ok: bool) -> None:
    policy = CsrfPolicy()
    if ok:
        policy.check(headers)
    else:
        assert code_of(lambda: policy.check(headers)) == "csrf_failed"


def test_a_configured_origin_list_replaces_the_same_host_rule() -> None:
    policy = CsrfPolicy(allowed_origins=["https://app.example"])
    base = [COOKIES, ("x-csrf-token", "proof"), ("host", "api.example")]
    policy.check(base + [("origin", "https://app.example")])
    assert code_of(lambda: policy.check(base + [("origin", "https://api.example")])) == "csrf_failed"


def test_the_event_stream_parser_reads_ids_events_data_and_comments() -> None:
    parser = SseParser()
    lines = [": keep-alive", "id: 7", "event: revocation", "data: {\"a\":", "data: 1}", "", "event: ready", ""]
    events = [e for e in map(parser.line, lines) if e is not None]
    assert [(e.id, e.event, e.data) for e in events] == [("7", "revocation", '{"a":\n1}')]


def test_revocations_cover_tokens_by_session_subject_jti_and_tenant() -> None:
    now = time.time()
    revoked = RevocationSet()
    future = int(now) + 600
    for entry in [
        {"tid": "t1", "kind": "session", "sid": "s1", "revoked_at": 1, "expires_at": future},
        {"tid": "t1", "kind": "subject", "sub": "u2", "issued_before": 100, "revoked_at": 1, "expires_at": future},
        {"tid": "t1", "kind": "token", "jti": "j3", "revoked_at": 1, "expires_at": future},
        {"tid": "t2", "kind": "tenant", "issued_before": 100, "revoked_at": 1, "expires_at": future},
    ]:
        assert revoked.insert(entry, now, 30)
    assert not revoked.insert({"tid": "t1", "kind": "galaxy"}, now, 30), "unknown kinds are skipped"
    claims = {"tid": "t1", "sub": "u1", "sid": "s0", "jti": "j0", "iat": 50}
    assert not revoked.covers(claims)
    assert revoked.covers({**claims, "sid": "s1"})
    assert not revoked.covers({**claims, "sid": "s1", "tid": "t9"}), "never across tenants"
    assert revoked.covers({**claims, "sub": "u2"})
    assert not revoked.covers({**claims, "sub": "u2", "iat": 101}), "issued after: not covered"
    assert revoked.covers({**claims, "jti": "j3"})
    assert revoked.covers({**claims, "tid": "t2"})
    assert len(revoked) == 4
    revoked.prune(future + 31, 30)
    assert len(revoked) == 0


ISSUER = "https://auth.example"


def jwk_of(key: Ed25519PrivateKey, kid: str) -> Dict[str, Any]:
    jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(key.public_key()))
    return {**jwk, "kid": kid, "use": "sig", "alg": "EdDSA"}


def signed(key: Ed25519PrivateKey, kid: str, **changes: Any) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": "platform", "sub": "u1", "tid": "t1", "iat": now, "exp": now + 600, "jti": "j1", "scope": ""}
    claims.update(changes)
    return jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": kid, "typ": "at+jwt"})


def test_an_unknown_kid_fetches_the_keys_again_but_not_more_often_than_allowed(stub: Any) -> None:
    first, second = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    published = [jwk_of(first, "k1")]
    jwks = stub(lambda _request: (200, {"keys": published}))
    keys = KeyCache(jwks.url + "/jwks", min_refetch=0.3)
    keys.load()
    verifier = Verifier(ISSUER, "platform", keys=keys)
    assert verifier.verify(signed(first, "k1"))["sub"] == "u1"

    published.append(jwk_of(second, "k2"))
    rotated = signed(second, "k2")
    calls = jwks.calls
    # Right after a fetch an unknown kid is refused without asking again…
    assert code_of(lambda: verifier.verify(rotated)) == "unknown_key"
    assert jwks.calls == calls
    deadline = time.monotonic() + 5
    while True:  # …once the interval has passed the first token naming it fetches the set.
        try:
            assert verifier.verify(rotated)["sub"] == "u1"
            break
        except AuthError as e:
            assert e.code == "unknown_key" and time.monotonic() < deadline
            time.sleep(0.05)
    assert jwks.calls == calls + 1
    assert code_of(lambda: verifier.verify(signed(second, "k9"))) == "unknown_key"


def test_local_verification_applies_tessera_s_rules(stub: Any) -> None:
    key = Ed25519PrivateKey.generate()
    jwks = stub(lambda _request: (200, {"keys": [jwk_of(key, "k1")]}))
    keys = KeyCache(jwks.url + "/jwks")
    keys.load()
    verifier = Verifier(ISSUER, "platform", keys=keys)
    now = int(time.time())
    assert code_of(lambda: verifier.verify(signed(key, "k1", exp=now - 120))) == "token_expired"
    assert code_of(lambda: verifier.verify(signed(key, "k1", nbf=now + 120))) == "token_not_yet_valid"
    assert code_of(lambda: verifier.verify(signed(key, "k1", aud="other"))) == "wrong_audience"
    assert code_of(lambda: verifier.verify(signed(key, "k1", iss="https://evil.example"))) == "wrong_issuer"
    untyped = jwt.encode({"iss": ISSUER}, key, algorithm="EdDSA", headers={"kid": "k1"})
    assert code_of(lambda: verifier.verify(untyped)) == "wrong_token_type"
    hs = jwt.encode({"iss": ISSUER}, "a" * 32, algorithm="HS256", headers={"kid": "k1", "typ": "at+jwt"})
    assert code_of(lambda: verifier.verify(hs)) == "unsupported_algorithm"
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"at+jwt","kid":"k1"}').rstrip(b"=").decode()
    assert code_of(lambda: verifier.verify(header + ".e30.")) == "unsupported_algorithm"
    crit = jwt.encode({}, key, algorithm="EdDSA", headers={"kid": "k1", "typ": "at+jwt", "crit": ["exp"]})
    assert code_of(lambda: verifier.verify(crit)) == "unsupported_critical_header"
    missing = signed(key, "k1")
    no_tid = jwt.encode({**jwt.decode(missing, options={"verify_signature": False}), "tid": None}, key, algorithm="EdDSA", headers={"kid": "k1", "typ": "at+jwt"})
    assert code_of(lambda: verifier.verify(no_tid)) in ("missing_claim", "token_malformed")
    assert code_of(lambda: verifier.verify("not.a.token")) == "token_malformed"
    assert code_of(lambda: verifier.verify("x" * 9000)) == "token_too_large"


def test_introspection_fails_closed_and_opens_its_circuit(stub: Any) -> None:
    down = stub(lambda _request: (500, {}))
    introspector = Introspector(down.url, basic_credentials("id", "secret"), issuer=ISSUER, audience="platform")
    for _ in range(FAILURES_TO_OPEN):
        assert code_of(lambda: introspector.verify("token")) == "verification_unavailable"
    calls = down.calls
    for _ in range(3):
        assert code_of(lambda: introspector.verify("token")) == "verification_unavailable"
    assert down.calls == calls, "an open circuit stops asking"


def test_service_tokens_are_cached_until_shortly_before_they_expire(stub: Any) -> None:
    seen: List[Dict[str, str]] = []

    def token_endpoint(request: Any) -> Tuple[int, Dict[str, Any]]:
        seen.append({"authorization": request.headers["Authorization"], "body": request.body.decode()})
        return 200, {"access_token": f"t{len(seen)}", "token_type": "Bearer", "expires_in": 600}

    server = stub(token_endpoint)
    tokens = ServiceTokens(ISSUER, "svc 1", "s:é", token_endpoint=server.url + "/oauth2/token", scope="reports:write")
    assert tokens.token() == "t1"
    assert tokens.token() == "t1"
    assert tokens.fetches == 1
    assert seen[0]["body"] == "grant_type=client_credentials&scope=reports%3Awrite"
    encoded = seen[0]["authorization"].removeprefix("Basic ")
    assert base64.b64decode(encoded) == b"svc+1:s%3A%C3%A9"
    tokens.invalidate()
    assert tokens.token() == "t2"

    refused = stub(lambda _request: (401, {"error": "invalid_client"}))
    with pytest.raises(FetchError):
        ServiceTokens(ISSUER, "id", "bad", token_endpoint=refused.url).token()
