// tessera-client/node: verify Tessera tokens in Node services.
export { AuthError, SetupError, type Problem } from "../errors.js";
export { hasPermission, isPermission } from "../permissions.js";
export { DEFAULT_CSRF, checkCsrf, requestOrigin, type CsrfPolicy } from "./csrf.js";
export { cookieValue, extractToken, type Credential } from "./extract.js";
export type { HeaderSource } from "./headers.js";
export { RevocationFeed, RevocationSet, SseParser, type Revocation } from "./revocations.js";
export { Verifier, requirePermission, type Identity, type TesseraClaims, type VerifierOptions } from "./verifier.js";
