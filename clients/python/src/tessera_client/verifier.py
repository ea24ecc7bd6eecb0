"""`Verifier`: everything a Python service needs to trust a request from Tessera's users and
services. Built once at start, shared by every request (it is thread-safe).

    verifier = Verifier.start(
        issuer="https://auth.example.com", audience="platform",
        client_id=os.environ["TESSERA_CLIENT_ID"],
        client_secret=os.environ["TESSERA_CLIENT_SECRET"],
    )
    identity = verifier.authenticate("POST", request_headers)

Locally, tokens are verified against the issuer's published keys (discovered from its
RFC 8414 metadata) with Tessera's rules: `typ: at+jwt`, EdDSA or ES256 as the key dictates,
`iss`, `aud`, `exp`, `nbf`, `iat` with a small leeway, a size limit. With client credentials
(a service account allowed `tokens:introspect`) the revocation feed is followed, so a logout
anywhere is refused here within a second. In introspection mode every new token is checked by
Tessera instead.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import jwt

from ._http import FetchError, basic_credentials, request_json
from .csrf import SAFE_METHODS, CsrfPolicy
from .errors import AuthError, SetupError
from .extract import MAX_TOKEN_BYTES, extract_token
from .introspection import Introspector
from .keys import KeyCache
from .permissions import has_permission, parse_permission
from .revocations import RevocationFeed

__all__ = ["Identity", "Verifier"]

LEEWAY_SECONDS = 30
REQUIRED_CLAIMS = ["iss", "aud", "sub", "tid", "iat", "exp", "jti"]
TOKEN_TYPES = ("at+jwt", "application/at+jwt")


@dataclass(frozen=True)
class Identity:
    """A verified caller."""

    sub: str
    """User id, or client id for a service account."""
    tid: str
    """Tenant id."""
    sid: Optional[str]
    """Session id (`None` for service tokens)."""
    roles: List[str]
    """Role names within the tenant."""
    scope: str
    """Space-separated permissions (`resource:action`)."""
    via_cookie: bool
    """Whether the token came from the access cookie (a browser)."""
    claims: Dict[str, Any] = field(repr=False)
    """Every verified claim."""

    def has_role(self, name: str) -> bool:
        return name in self.roles

    def has_permission(self, wanted: str) -> bool:
        """Whether the token's `scope` allows `wanted` (Tessera's wildcard rule)."""
        return has_permission(self.scope, wanted)

    def require(self, wanted: str) -> "Identity":
        """Itself, or `AuthError` 403 `forbidden`."""
        if not self.has_permission(wanted):
            raise AuthError.forbidden(wanted)
        return self


def _b64_json(part: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except ValueError:
        return None


def _header(token: str) -> Dict[str, Any]:
    """The JOSE header, checked before any key is looked up."""
    if len(token.encode()) > MAX_TOKEN_BYTES:
        raise AuthError.invalid("token_too_large", "token too large")
    parts = token.split(".")
    if len(parts) != 3:
        raise AuthError.invalid("token_malformed", "not three dot-separated parts")
    header = _b64_json(parts[0])
    if not isinstance(header, dict):
        raise AuthError.invalid("token_malformed", "header is not a valid JSON object")
    if "crit" in header:
        raise AuthError.invalid("unsupported_critical_header", "unsupported critical header")
    if header.get("alg") not in ("EdDSA", "ES256"):
        raise AuthError.invalid("unsupported_algorithm", "unsupported algorithm")
    return header


# PyJWT's refusals, as Tessera names them.
_PYJWT_CODES: Tuple[Tuple[type, str], ...] = (
    (jwt.ExpiredSignatureError, "token_expired"),
    (jwt.ImmatureSignatureError, "token_not_yet_valid"),
    (jwt.InvalidAudienceError, "wrong_audience"),
    (jwt.InvalidIssuerError, "wrong_issuer"),
    (jwt.MissingRequiredClaimError, "missing_claim"),
    (jwt.InvalidSignatureError, "bad_signature"),
    (jwt.InvalidAlgorithmError, "algorithm_mismatch"),
)


def _code(error: jwt.PyJWTError) -> str:
    for kind, code in _PYJWT_CODES:
        if isinstance(error, kind):
            return code
    return "token_malformed"


class Verifier:
    """Verifies Tessera tokens for one service. Make one with `Verifier.start(...)`."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        *,
        keys: Optional[KeyCache] = None,
        introspector: Optional[Introspector] = None,
        feed: Optional[RevocationFeed] = None,
        cookie_name: str = "access_token",
        csrf: Optional[CsrfPolicy] = None,
        leeway: int = LEEWAY_SECONDS,
    ) -> None:
        """Parts given directly (tests, custom setups); `start` is the usual way."""
        if (keys is None) == (introspector is None):
            raise SetupError("give exactly one of keys and introspector")
        self.issuer = issuer
        self.audience = audience
        self._keys = keys
        self._introspector = introspector
        self._feed = feed
        self.cookie_name = cookie_name
        self.csrf = csrf or CsrfPolicy()
        self._leeway = leeway

    @classmethod
    def start(
        cls,
        issuer: str,
        audience: str,
        *,
        client_id: Optional[str] = None,
        client_secret: Optional[str] = None,
        introspection: bool = False,
        introspection_cache: float = 5.0,
        follow_revocations: bool = True,
        base_url: Optional[str] = None,
        cookie_name: str = "access_token",
        csrf: Optional[CsrfPolicy] = None,
        leeway: int = LEEWAY_SECONDS,
        jwks_min_refetch: float = 5.0,
        jwks_refresh: float = 300.0,
        timeout: float = 10.0,
    ) -> "Verifier":
        """Discovers the issuer, reads its keys and, with client credentials, every
        revocation still in force, then follows the feed in the background. Raises
        `SetupError` rather than start a verifier that would accept what it should not.

        `base_url`: where this service reaches Tessera when that differs from the public
        issuer URL (inside a cluster, say); the endpoints Tessera publishes are rewritten to
        it. Tokens must still name `issuer`.
        """
        if not issuer or not audience:
            raise SetupError("the issuer and the audience are required")
        credentials = None
        if client_id is not None and client_secret is not None:
            credentials = basic_credentials(client_id, client_secret)
        elif client_id is not None or client_secret is not None:
            raise SetupError("give both client_id and client_secret, or neither")
        if introspection and credentials is None:
            raise SetupError("introspection needs client credentials")
        public = issuer.rstrip("/")
        reach = (base_url or issuer).rstrip("/")

        def local(url: str) -> str:
            return reach + url[len(public) :] if url.startswith(public) else url

        try:
            metadata = request_json(
                f"{reach}/.well-known/oauth-authorization-server", timeout=timeout
            )
        except FetchError as e:
            raise SetupError(f"discovery failed: {e}") from None
        if metadata.get("issuer") != issuer or not isinstance(metadata.get("jwks_uri"), str):
            raise SetupError(
                f"discovery failed: the metadata names issuer {metadata.get('issuer')!r}, "
                f"not {issuer!r}"
            )
        keys = introspector = feed = None
        if introspection:
            assert credentials is not None
            endpoint = metadata.get("introspection_endpoint") or f"{public}/oauth2/introspect"
            introspector = Introspector(
                local(endpoint),
                credentials,
                issuer=issuer,
                audience=audience,
                ttl=introspection_cache,
                timeout=timeout,
            )
        else:
            keys = KeyCache(
                local(metadata["jwks_uri"]),
                min_refetch=jwks_min_refetch,
                refresh=jwks_refresh,
                timeout=timeout,
            )
            try:
                keys.load()
            except FetchError as e:
                raise SetupError(f"reading the JWKS failed: {e}") from None
            if credentials is not None and follow_revocations:
                page = metadata.get("revocations_endpoint") or f"{public}/api/v1/auth/revocations"
                stream = (
                    metadata.get("revocations_stream_endpoint")
                    or f"{public}/api/v1/auth/revocations/stream"
                )
                feed = RevocationFeed(
                    local(page), local(stream), credentials, leeway=leeway, timeout=timeout
                )
                try:
                    feed.start()
                except FetchError as e:
                    raise SetupError(f"reading the revocation feed failed: {e}") from None
        return cls(
            issuer,
            audience,
            keys=keys,
            introspector=introspector,
            feed=feed,
            cookie_name=cookie_name,
            csrf=csrf,
            leeway=leeway,
        )

    def close(self) -> None:
        """Stops following the revocation feed."""
        if self._feed is not None:
            self._feed.stop()

    # -- verification -------------------------------------------------------------------

    def verify(self, token: str) -> Dict[str, Any]:
        """The claims of `token` if it is valid and not revoked now; `AuthError` otherwise."""
        if self._introspector is not None:
            claims = self._introspector.verify(token)
        else:
            claims = self._verify_locally(token)
        if self._feed is not None and self._feed.set.covers(claims):
            raise AuthError.revoked()
        return claims

    def _verify_locally(self, token: str) -> Dict[str, Any]:
        header = _header(token)
        assert self._keys is not None
        found = self._keys.find(header.get("kid"))
        if found is None:
            raise AuthError.invalid("unknown_key", "the token names an unknown key")
        key, algorithm = found
        if header["alg"] != algorithm:
            raise AuthError.invalid("algorithm_mismatch", "the algorithm is not the key's")
        if str(header.get("typ", "")).lower() not in TOKEN_TYPES:
            raise AuthError.invalid("wrong_token_type", "not an access token")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self._leeway,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.PyJWTError as e:
            raise AuthError.invalid(_code(e), "the access token is not valid") from None
        if not isinstance(claims.get("sub"), str) or not isinstance(claims.get("tid"), str):
            raise AuthError.invalid("token_malformed", "claims are not Tessera's")
        return claims

    def authenticate(self, method: str, headers: Iterable[Tuple[str, str]]) -> Identity:
        """Finds the request's token (`Authorization: Bearer`, then the access cookie),
        checks CSRF for cookie-borne unsafe requests, and verifies it."""
        headers = list(headers)
        credential = extract_token(headers, self.cookie_name)
        if credential is None:
            raise AuthError.missing()
        if credential.via_cookie and method.upper() not in SAFE_METHODS:
            self.csrf.check(headers)
        claims = self.verify(credential.token)
        return Identity(
            sub=claims["sub"],
            tid=claims["tid"],
            sid=claims.get("sid"),
            roles=[str(r) for r in claims.get("roles", [])],
            scope=str(claims.get("scope", "")),
            via_cookie=credential.via_cookie,
            claims=claims,
        )

    # -- health -------------------------------------------------------------------------

    @property
    def revocations_live(self) -> Optional[bool]:
        """Whether the revocation feed is connected and caught up; `None` without a feed
        (no credentials, introspection mode). Fit for a readiness check."""
        return None if self._feed is None else self._feed.live

    @property
    def revocation_count(self) -> int:
        """How many revocations are held."""
        return 0 if self._feed is None else len(self._feed.set)

    def health(self) -> Mapping[str, Any]:
        """`{"revocations_live", "revocations_held", "revocations_silence_secs"}`."""
        return {
            "revocations_live": self.revocations_live,
            "revocations_held": self.revocation_count,
            "revocations_silence_secs": None
            if self._feed is None
            else round(self._feed.silence, 1),
        }

    def refresh_keys(self) -> bool:
        """Fetches the issuer's keys now; whether the set changed (local mode only)."""
        return self._keys.refresh() if self._keys is not None else False


def check_permission_name(permission: str) -> str:
    """`permission` if it is `resource:action`, so a typo fails at start-up."""
    parse_permission(permission)
    return permission


