"""Verify Tessera access tokens in Python services.

`Verifier` checks tokens locally against Tessera's published keys and follows its revocation
feed (or asks Tessera per token in introspection mode); `Identity` is the verified caller with
Tessera's permission rule; `CsrfPolicy` is Tessera's rule for cookie requests; `ServiceTokens`
caches a service account's token for calls to other services; `Flags` holds Tessera's feature
flags for one context, refreshed when they change. `tessera_client.fastapi` and
`tessera_client.asgi` plug it into FastAPI and any ASGI app.
"""

from .csrf import CsrfPolicy
from .errors import AuthError, SetupError
from .extract import Credential, extract_token
from .flags import Flags
from .permissions import InvalidPermission, has_permission, parse_permission
from .service_tokens import ServiceTokens
from .verifier import Identity, Verifier

__all__ = [
    "AuthError",
    "Credential",
    "CsrfPolicy",
    "Flags",
    "Identity",
    "InvalidPermission",
    "ServiceTokens",
    "SetupError",
    "Verifier",
    "extract_token",
    "has_permission",
    "parse_permission",
]

__version__ = "0.1.0"
