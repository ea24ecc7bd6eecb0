// Tessera tokens through `jose`, the way a Node or TypeScript service would verify them:
// the keys come from the JWKS URL alone (createRemoteJWKSet), nothing is shared in advance.
//
//   node jose_check.mjs JWKS_URL ISSUER AUDIENCE   token on stdin; prints the claims as JSON
import { createRemoteJWKSet, jwtVerify } from "jose";

const [jwksUrl, issuer, audience] = process.argv.slice(2);
if (!jwksUrl || !issuer || !audience) {
  console.error("usage: node jose_check.mjs JWKS_URL ISSUER AUDIENCE < token");
  process.exit(2);
}

let token = "";
for await (const chunk of process.stdin) {
  token += chunk;
}

const jwks = createRemoteJWKSet(new URL(jwksUrl));
const { payload, protectedHeader } = await jwtVerify(token.trim(), jwks, {
  issuer,
  audience,
  typ: "at+jwt",
  algorithms: ["EdDSA", "ES256"],
  requiredClaims: ["exp", "iat", "sub", "jti"],
});
process.stdout.write(JSON.stringify({ alg: protectedHeader.alg, claims: payload }) + "\n");
