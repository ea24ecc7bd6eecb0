// `Verifier`: everything a Node service needs to trust a request from Tessera's users and
// services. `await Verifier.start({...})` discovers the issuer (RFC 8414 metadata), verifies
// tokens locally with `jose` against the published keys (cached; fetched again on an unknown
// `kid`, at most every `jwksMinRefetchMs`), and, given a service account allowed
// `tokens:introspect`, follows the revocation feed so a logout anywhere is refused within a
// second. It refuses to start rather than accept what it should not.

import { createRemoteJWKSet, errors, jwtVerify, type JWTPayload } from "jose";

import { AuthError, SetupError } from "../errors.js";
import { hasPermission } from "../permissions.js";
import { DEFAULT_CSRF, SAFE_METHODS, checkCsrf, type CsrfPolicy } from "./csrf.js";
import { MAX_TOKEN_BYTES, extractToken } from "./extract.js";
import type { HeaderSource } from "./headers.js";
import { RevocationFeed } from "./revocations.js";

const ALGORITHMS = ["EdDSA", "ES256"];
const REQUIRED_CLAIMS = ["iss", "aud", "sub", "tid", "iat", "exp", "jti"];
const LEEWAY_SECONDS = 30;

/** The claims of a verified Tessera access token. */
export interface TesseraClaims extends JWTPayload {
  sub: string;
  tid: string;
  jti: string;
  iat: number;
  exp: number;
  client_id?: string;
  sid?: string;
  roles?: string[];
  scope?: string;
}

/** A verified caller. */
export interface Identity {
  /** User id, or client id for a service account. */
  sub: string;
  /** Tenant id. */
  tid: string;
  /** Session id (undefined for service tokens). */
  sid: string | undefined;
  roles: string[];
  /** Space-separated permissions. */
  scope: string;
  /** Whether the token came from the access cookie (a browser). */
  viaCookie: boolean;
  claims: TesseraClaims;
}

/** Whether `identity`'s token allows `permission`; throws `AuthError` 403 when not. */
export function requirePermission(identity: Identity, permission: string): Identity {
  if (!hasPermission(identity.scope, permission)) throw AuthError.forbidden(permission);
  return identity;
}

/** Settings for `Verifier.start`. */
export interface VerifierOptions {
  /** Tessera's public URL, exactly as in `iss`. */
  issuer: string;
  /** Tessera's `token.audience`. */
  audience: string;
  /** A service account allowed `tokens:introspect`: needed to follow revocations. */
  clientId?: string;
  clientSecret?: string;
  /** Where this service reaches Tessera, when not at the issuer URL (inside a cluster). */
  baseUrl?: string;
  cookieName?: string;
  csrf?: Partial<CsrfPolicy>;
  jwksMinRefetchMs?: number;
  jwksRefreshMs?: number;
}

interface Metadata {
  issuer?: string;
  jwks_uri?: string;
  revocations_endpoint?: string;
  revocations_stream_endpoint?: string;
}

function basic(id: string, secret: string): string {
  // RFC 6749 §2.3.1: each part form-encoded before joining.
  const form = (text: string) => new URLSearchParams({ x: text }).toString().slice(2);
  return `Basic ${Buffer.from(`${form(id)}:${form(secret)}`).toString("base64")}`;
}

function headerOf(token: string): Record<string, unknown> {
  if (Buffer.byteLength(token) > MAX_TOKEN_BYTES) throw AuthError.invalid("token_too_large", "token too large");
  const parts = token.split(".");
  if (parts.length !== 3 || parts[0] === undefined) {
    throw AuthError.invalid("token_malformed", "not three dot-separated parts");
  }
  let header: unknown;
  try {
    header = JSON.parse(Buffer.from(parts[0], "base64url").toString("utf8"));
  } catch {
    header = undefined;
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    throw AuthError.invalid("token_malformed", "header is not a valid JSON object");
  }
  const fields = header as Record<string, unknown>;
  if ("crit" in fields) throw AuthError.invalid("unsupported_critical_header", "unsupported critical header");
  if (!ALGORITHMS.includes(String(fields.alg))) throw AuthError.invalid("unsupported_algorithm", "unsupported algorithm");
  return fields;
}

/** jose's refusals, named as Tessera names them. */
function refusal(error: unknown): AuthError {
  if (error instanceof errors.JWTExpired) return AuthError.invalid("token_expired", "token expired");
  if (error instanceof errors.JWTClaimValidationFailed) {
    const byClaim: Record<string, string> = {
      aud: "wrong_audience",
      iss: "wrong_issuer",
      nbf: "token_not_yet_valid",
      typ: "wrong_token_type",
    };
    const code = error.reason === "missing" ? "missing_claim" : (byClaim[error.claim] ?? "token_malformed");
    return AuthError.invalid(code, "the access token is not valid");
  }
  if (error instanceof errors.JWSSignatureVerificationFailed) return AuthError.invalid("bad_signature", "bad signature");
  if (error instanceof errors.JWKSNoMatchingKey) return AuthError.invalid("unknown_key", "the token names an unknown key");
  if (error instanceof errors.JOSEAlgNotAllowed) return AuthError.invalid("unsupported_algorithm", "unsupported algorithm");
  if (error instanceof errors.JWKSTimeout || error instanceof TypeError) return AuthError.unavailable();
  if (error instanceof errors.JOSEError) return AuthError.invalid("token_malformed", "the access token is not valid");
  return AuthError.unavailable();
}

/** Verifies Tessera tokens for one service. */
export class Verifier {
  private constructor(
    readonly issuer: string,
    readonly audience: string,
    private readonly keys: ReturnType<typeof createRemoteJWKSet>,
    private readonly feed: RevocationFeed | undefined,
    private readonly cookieName: string,
    private readonly csrf: CsrfPolicy,
  ) {}

  /** Discovers the issuer, reads its keys and every revocation still in force; rejects with
   * `SetupError` instead of starting a verifier that would accept what it should not. */
  static async start(options: VerifierOptions): Promise<Verifier> {
    const { issuer, audience } = options;
    if (!issuer || !audience) throw new SetupError("the issuer and the audience are required");
    if ((options.clientId === undefined) !== (options.clientSecret === undefined)) {
      throw new SetupError("give both clientId and clientSecret, or neither");
    }
    const publicUrl = issuer.replace(/\/+$/, "");
    const reach = (options.baseUrl ?? issuer).replace(/\/+$/, "");
    const local = (url: string) => (url.startsWith(publicUrl) ? reach + url.slice(publicUrl.length) : url);
    let metadata: Metadata;
    try {
      const response = await fetch(`${reach}/.well-known/oauth-authorization-server`, {
        signal: AbortSignal.timeout(10_000),
      });
      if (response.status !== 200) throw new Error(`answered ${response.status}`);
      metadata = (await response.json()) as Metadata;
    } catch (error) {
      throw new SetupError(`discovery failed: ${String(error)}`);
    }
    if (metadata.issuer !== issuer || typeof metadata.jwks_uri !== "string") {
      throw new SetupError(`discovery failed: the metadata names issuer ${String(metadata.issuer)}, not ${issuer}`);
    }
    const keys = createRemoteJWKSet(new URL(local(metadata.jwks_uri)), {
      cooldownDuration: options.jwksMinRefetchMs ?? 5_000,
      cacheMaxAge: options.jwksRefreshMs ?? 300_000,
      timeoutDuration: 10_000,
    });
    let feed: RevocationFeed | undefined;
    if (options.clientId !== undefined && options.clientSecret !== undefined) {
      feed = new RevocationFeed(
        local(metadata.revocations_endpoint ?? `${publicUrl}/api/v1/auth/revocations`),
        local(metadata.revocations_stream_endpoint ?? `${publicUrl}/api/v1/auth/revocations/stream`),
        basic(options.clientId, options.clientSecret),
        LEEWAY_SECONDS,
      );
      try {
        await feed.start();
      } catch (error) {
        throw new SetupError(`reading the revocation feed failed: ${String(error)}`);
      }
    }
    const csrf = { ...DEFAULT_CSRF, ...options.csrf };
    return new Verifier(issuer, audience, keys, feed, options.cookieName ?? "access_token", csrf);
  }

  /** Stops following the revocation feed (lets the process exit). */
  close(): void {
    this.feed?.stop();
  }

  /** The claims of `token` if it is valid and not revoked now; rejects with `AuthError`. */
  async verify(token: string): Promise<TesseraClaims> {
    headerOf(token);
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.keys, {
        issuer: this.issuer,
        audience: this.audience,
        algorithms: ALGORITHMS,
        typ: "at+jwt",
        clockTolerance: LEEWAY_SECONDS,
        requiredClaims: REQUIRED_CLAIMS,
      }));
    } catch (error) {
      throw refusal(error);
    }
    const claims = payload as TesseraClaims;
    if (typeof claims.sub !== "string" || typeof claims.tid !== "string") {
      throw AuthError.invalid("token_malformed", "claims are not Tessera's");
    }
    if (this.feed?.set.covers(claims)) throw AuthError.revoked();
    return claims;
  }

  /** Finds the request's token (`Authorization: Bearer`, then the access cookie), checks CSRF
   * for cookie-borne unsafe requests, and verifies it. */
  async authenticate(method: string, headers: HeaderSource): Promise<Identity> {
    const credential = extractToken(headers, this.cookieName);
    if (credential === undefined) throw AuthError.missing();
    if (credential.viaCookie && !SAFE_METHODS.has(method.toUpperCase())) checkCsrf(this.csrf, headers);
    const claims = await this.verify(credential.token);
    return {
      sub: claims.sub,
      tid: claims.tid,
      sid: claims.sid,
      roles: Array.isArray(claims.roles) ? claims.roles.map(String) : [],
      scope: typeof claims.scope === "string" ? claims.scope : "",
      viaCookie: credential.viaCookie,
      claims,
    };
  }

  /** Whether the revocation feed is connected and caught up (undefined without one). */
  get revocationsLive(): boolean | undefined {
    return this.feed?.live;
  }

  /** A `/healthz` body. */
  health(): { revocations_live: boolean | null; revocations_held: number } {
    return { revocations_live: this.feed?.live ?? null, revocations_held: this.feed?.set.size ?? 0 };
  }
}

