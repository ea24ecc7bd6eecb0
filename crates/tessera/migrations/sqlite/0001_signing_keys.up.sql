-- Keys that sign access tokens. The private part never rests unencrypted: `private_key` holds
-- a 12-byte nonce followed by the AES-256-GCM ciphertext of the PKCS#8 document, sealed with
-- the master key and bound to the kid.
CREATE TABLE signing_keys (
    -- Key id, published in the JWKS and named in every token header.
    kid TEXT PRIMARY KEY,
    -- JOSE algorithm, fixed by the key type (EdDSA or ES256); verifiers never take it from a token.
    alg TEXT NOT NULL,
    -- Public JWK (JSON text), served as-is in /.well-known/jwks.json.
    public_jwk TEXT NOT NULL,
    private_key BLOB NOT NULL,
    -- Unix seconds.
    created_at BIGINT NOT NULL,
    -- When the key starts signing. Until then it is only published, so every verifier has
    -- fetched it before the first token it signs arrives.
    activated_at BIGINT NOT NULL,
    -- When a newer key took over signing. The public key stays published until every token it
    -- signed has expired.
    retired_at BIGINT
);

-- The signer is the newest activated key; the JWKS lists keys by activation.
CREATE INDEX signing_keys_activated_at ON signing_keys (activated_at);
