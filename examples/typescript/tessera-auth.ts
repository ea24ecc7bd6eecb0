// Tessera access tokens in a TypeScript (Node) service: one file to copy next to your code.
//
//   const auth = new TesseraAuth({ issuer: "https://auth.example.com", audience: "platform" });
//   const caller = await auth.authenticate(request.headersDistinct); // or throws TesseraAuthError
//   requirePermission(caller, "reports:write");                      // or throws (403)
//
// Framework-agnostic: it takes the request's headers and returns the verified claims, or throws
// a TesseraAuthError carrying the HTTP status, Tessera's stable code and an RFC 9457 body.
//
// The rules are Tessera's own:
// - the token is read from `Authorization: Bearer <token>`, else from the `access_token` cookie,
//   never from the query string; a malformed `Authorization` header is refused, not skipped;
// - keys come from the JWKS that Tessera's metadata (`{issuer}/.well-known/oauth-authorization-server`)
//   names, cached, and fetched again when a token names an unknown `kid` (a rotated key);
// - tokens must have `typ: at+jwt`, be signed with EdDSA or ES256, and carry the expected `iss`
//   and `aud` with `exp`, `iat` and `sub`;
// - permissions are the token's `scope`, `resource:action` pairs where either part may be `*`.
//   A held wildcard covers a request; a requested wildcard is covered only by a held one.
//
// Tokens are checked locally: a token revoked before it expires is still accepted here until
// `exp` (use Tessera's introspection endpoint where that matters). Requires `jose` 5.

import { createRemoteJWKSet, errors, jwtVerify, type JWTPayload } from "jose";

const ALGORITHMS = ["EdDSA", "ES256"];
const REQUIRED_CLAIMS = ["iss", "aud", "exp", "iat", "sub"];
/** Tessera never issues a longer token; anything bigger is refused before it is parsed. */
const MAX_TOKEN_BYTES = 8 * 1024;
/** Clock skew tolerated on `exp`, `nbf` and `iat`, as Tessera's own verifier does. */
const LEEWAY_SECONDS = 30;
/** How long the key set is trusted before it is fetched again, so a key Tessera retires stops
 * being accepted within this time. */
const JWKS_MAX_AGE_MS = 300_000;
/** Either part of a permission: `*`, or lowercase letters, digits, `_`, `-` and `.`. */
const PART = /^(\*|[a-z0-9_.-]{1,64})$/;
/** Header text: visible ASCII, spaces and tabs. */
const HEADER_TEXT = /^[\t\x20-\x7e]*$/;

/** The claims of a verified Tessera access token. */
export interface TesseraClaims extends JWTPayload {
  /** User id, or client id for a service account. */
  sub: string;
  /** Tenant id. */
  tid: string;
  /** Role names within the tenant. */
  roles: string[];
  /** Space-separated permissions (`resource:action`); absent when there are none. */
  scope?: string;
  /** The OAuth client the token was issued to. */
  client_id: string;
  /** The session, for user tokens. */
  sid?: string;
}

/** The body of an error answer (RFC 9457 problem details), shaped as Tessera's are. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  code: string;
  detail: string;
}

const TITLES: Record<number, string> = {
  401: "Unauthorized",
  403: "Forbidden",
  503: "Service Unavailable",
};

/** A request refused: the HTTP status, Tessera's stable `code`, and a safe `detail`. */
export class TesseraAuthError extends Error {
  constructor(
    readonly status: 401 | 403 | 503,
    readonly code: "unauthenticated" | "invalid_token" | "forbidden" | "unavailable",
    readonly detail: string,
  ) {
    super(`${status} ${code}: ${detail}`);
    this.name = "TesseraAuthError";
  }

  /** The `WWW-Authenticate` challenge RFC 6750 asks a resource server to send, if any. */
  get challenge(): string | undefined {
    switch (this.code) {
      case "unauthenticated":
        return "Bearer";
      case "invalid_token":
        return 'Bearer error="invalid_token"';
      case "forbidden":
        return 'Bearer error="insufficient_scope"';
      default:
        return undefined;
    }
  }

  /** Headers to answer with: the problem+json type, `no-store`, and the challenge. */
  get headers(): Record<string, string> {
    const headers: Record<string, string> = {
      "content-type": "application/problem+json",
      "cache-control": "no-store",
    };
    const challenge = this.challenge;
    if (challenge !== undefined) {
      headers["www-authenticate"] = challenge;
    }
    return headers;
  }

  /** The RFC 9457 body. */
  get problem(): Problem {
    return {
      type: `urn:tessera:problem:${this.code}`,
      title: TITLES[this.status] ?? "Error",
      status: this.status,
      code: this.code,
      detail: this.detail,
    };
  }
}

const invalidToken = (detail: string) => new TesseraAuthError(401, "invalid_token", detail);

/**
 * Request headers as a framework hands them over: lowercase names, each a string or a list
 * (Node's `request.headersDistinct` keeps repeated headers apart, which the checks need), or a
 * fetch `Headers`.
 */
export type HeaderSource = Headers | Record<string, string | string[] | undefined>;

function headerValues(headers: HeaderSource, name: string): string[] {
  if (typeof Headers !== "undefined" && headers instanceof Headers) {
    const value = headers.get(name);
    return value === null ? [] : [value];
  }
  const value = (headers as Record<string, string | string[] | undefined>)[name];
  if (value === undefined) {
    return [];
  }
  return Array.isArray(value) ? value : [value];
}

/** Like `trim()`, for ASCII whitespace only, as Tessera reads cookies. */
function trimAscii(text: string): string {
  return text.replace(/^[ \t\n\f\r]+|[ \t\n\f\r]+$/g, "");
}

function checked(token: string): string {
  if (token.length > MAX_TOKEN_BYTES) {
    throw invalidToken("credential too large");
  }
  return token;
}

/**
 * The request's token, in Tessera's order: `Authorization: Bearer`, then the cookie; `null`
 * when there is none. A malformed header or a cookie sent twice throws rather than counting as
 * "no token": falling back would let a bad header hide behind a cookie.
 */
export function extractToken(headers: HeaderSource, cookieName = "access_token"): string | null {
  const authorization = headerValues(headers, "authorization");
  if (authorization.length > 0) {
    const [value] = authorization;
    const space = value?.indexOf(" ") ?? -1;
    if (authorization.length > 1 || value === undefined || !HEADER_TEXT.test(value) || space < 0) {
      throw invalidToken("malformed Authorization header");
    }
    const token = value.slice(space + 1).replace(/^ +| +$/g, "");
    if (value.slice(0, space).toLowerCase() !== "bearer" || token === "" || token.includes(" ")) {
      throw invalidToken("malformed Authorization header");
    }
    return checked(token);
  }

  let found: string | null = null;
  let seen = false;
  for (const header of headerValues(headers, "cookie")) {
    for (const pair of header.split(";")) {
      const eq = pair.indexOf("=");
      if (eq < 0 || trimAscii(pair.slice(0, eq)) !== cookieName) {
        continue;
      }
      if (seen) {
        throw invalidToken("ambiguous access-token cookie");
      }
      seen = true;
      const value = trimAscii(pair.slice(eq + 1)).replace(/^"+|"+$/g, "");
      if (value !== "" && HEADER_TEXT.test(value)) {
        found = checked(value);
      }
    }
  }
  return found;
}

function parsePermission(text: string): [string, string] | null {
  const colon = text.indexOf(":");
  if (colon < 0) {
    return null;
  }
  const resource = text.slice(0, colon);
  const action = text.slice(colon + 1);
  return PART.test(resource) && PART.test(action) ? [resource, action] : null;
}

/** Whether a space-separated `scope` allows the permission `wanted` (`resource:action`). */
export function hasPermission(scope: string, wanted: string): boolean {
  const asked = parsePermission(wanted);
  if (asked === null) {
    throw new TypeError(`${JSON.stringify(wanted)} is not a permission: expected resource:action`);
  }
  const [resource, action] = asked;
  const covers = (held: string, requested: string) => held === "*" || held === requested;
  return scope.split(" ").some((item) => {
    const held = parsePermission(item);
    return held !== null && covers(held[0], resource) && covers(held[1], action);
  });
}

/** Throws a 403 `forbidden` unless the caller's token holds `permission`. */
export function requirePermission(claims: TesseraClaims, permission: string): void {
  if (!hasPermission(claims.scope ?? "", permission)) {
    throw new TesseraAuthError(403, "forbidden", `this needs the permission \`${permission}\``);
  }
}

type KeySet = ReturnType<typeof createRemoteJWKSet>;

/** Errors that say the token is bad, as opposed to Tessera being unreachable. */
const TOKEN_ERRORS = [
  errors.JWTExpired,
  errors.JWTClaimValidationFailed,
  errors.JWTInvalid,
  errors.JWSInvalid,
  errors.JWSSignatureVerificationFailed,
  errors.JWKSNoMatchingKey,
  errors.JWKSMultipleMatchingKeys,
  errors.JOSEAlgNotAllowed,
  errors.JOSENotSupported,
];

export interface TesseraAuthOptions {
  /** Tessera's public URL, exactly as in the tokens' `iss`. */
  issuer: string;
  /** The audience this service expects in `aud`. */
  audience: string;
  /** The access-token cookie's name, if Tessera's configuration changed it. */
  cookieName?: string;
  /** How long to wait for Tessera when fetching its metadata or keys, in milliseconds. */
  timeoutMs?: number;
}

/** Verifies Tessera access tokens for one issuer and audience. */
export class TesseraAuth {
  readonly issuer: string;
  private readonly audience: string;
  private readonly cookieName: string;
  private readonly timeoutMs: number;
  private keySet: Promise<KeySet> | undefined;

  constructor(options: TesseraAuthOptions) {
    this.issuer = options.issuer.replace(/\/+$/, "");
    this.audience = options.audience;
    this.cookieName = options.cookieName ?? "access_token";
    this.timeoutMs = options.timeoutMs ?? 5_000;
  }

  /** The key set, made on first use from Tessera's metadata (so the service starts even while
   * Tessera is down); a failed discovery is tried again on the next request. */
  private jwks(): Promise<KeySet> {
    this.keySet ??= this.discover().catch((error: unknown) => {
      this.keySet = undefined;
      throw error;
    });
    return this.keySet;
  }

  private async discover(): Promise<KeySet> {
    const url = `${this.issuer}/.well-known/oauth-authorization-server`;
    let metadata: { issuer?: unknown; jwks_uri?: unknown };
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(this.timeoutMs) });
      if (!response.ok) {
        throw new Error(`HTTP ${response.status}`);
      }
      metadata = (await response.json()) as typeof metadata;
    } catch {
      throw new TesseraAuthError(503, "unavailable", "the token issuer cannot be reached");
    }
    // RFC 8414 §3.3: metadata naming another issuer must not be used.
    if (metadata.issuer !== this.issuer || typeof metadata.jwks_uri !== "string") {
      throw new TesseraAuthError(503, "unavailable", "the token issuer's metadata does not match");
    }
    return createRemoteJWKSet(new URL(metadata.jwks_uri), {
      cacheMaxAge: JWKS_MAX_AGE_MS,
      timeoutDuration: this.timeoutMs,
    });
  }

  /** Verifies `token`; throws `TesseraAuthError` when it is not acceptable. */
  async verify(token: string): Promise<TesseraClaims> {
    const keys = await this.jwks();
    try {
      const { payload } = await jwtVerify(token, keys, {
        issuer: this.issuer,
        audience: this.audience,
        typ: "at+jwt",
        algorithms: ALGORITHMS,
        requiredClaims: REQUIRED_CLAIMS,
        clockTolerance: LEEWAY_SECONDS,
      });
      return payload as TesseraClaims;
    } catch (error) {
      if (TOKEN_ERRORS.some((kind) => error instanceof kind)) {
        throw invalidToken(`the access token is not valid: ${(error as Error).message}`);
      }
      throw new TesseraAuthError(503, "unavailable", "the signing keys cannot be fetched");
    }
  }

  /** The caller's verified claims, from the request's headers. */
  async authenticate(headers: HeaderSource): Promise<TesseraClaims> {
    const token = extractToken(headers, this.cookieName);
    if (token === null) {
      throw new TesseraAuthError(401, "unauthenticated", "this endpoint needs an access token");
    }
    return this.verify(token);
  }
}
