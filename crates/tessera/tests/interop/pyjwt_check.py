"""Tessera tokens through PyJWT, the way a Python service would handle them.

  verify JWKS_URL ISSUER AUDIENCE   token on stdin; prints the verified claims as JSON
  sign KID                          claims JSON on stdin; prints {"jwk": ..., "token": ...}
"""
import json
import sys

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm


def verify(jwks_url, issuer, audience):
    token = sys.stdin.read().strip()
    client = jwt.PyJWKClient(jwks_url)
    key = client.get_signing_key_from_jwt(token)
    claims = jwt.decode(
        token,
        key.key,
        algorithms=["EdDSA"],
        audience=audience,
        issuer=issuer,
        options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
    )
    header = jwt.get_unverified_header(token)
    if header.get("typ") != "at+jwt":
        raise SystemExit(f"unexpected typ {header.get('typ')!r}")
    print(json.dumps(claims))


def sign(kid):
    claims = json.load(sys.stdin)
    private = Ed25519PrivateKey.generate()
    jwk = json.loads(OKPAlgorithm.to_jwk(private.public_key()))
    jwk.update(kid=kid, alg="EdDSA", use="sig")
    token = jwt.encode(claims, private, algorithm="EdDSA", headers={"kid": kid, "typ": "at+jwt"})
    print(json.dumps({"jwk": jwk, "token": token}))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"verify": verify, "sign": sign}[command](*args)
