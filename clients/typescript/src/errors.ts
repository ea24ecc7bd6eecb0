// What a refusal looks like: Tessera's status, its stable code, and an RFC 9457 body. The codes
// are the ones Tessera and its other client packages answer with.

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

/** A request that is not authenticated or not allowed. Never carries token content. */
export class AuthError extends Error {
  constructor(
    readonly status: 401 | 403 | 503,
    readonly code: string,
    readonly detail: string,
  ) {
    super(`${status} ${code}: ${detail}`);
    this.name = "AuthError";
  }

  static missing(): AuthError {
    return new AuthError(401, "unauthenticated", "authentication required");
  }

  static invalidCredential(detail: string): AuthError {
    return new AuthError(401, "invalid_credential", detail);
  }

  static invalid(code: string, detail: string): AuthError {
    return new AuthError(401, code, detail);
  }

  static revoked(): AuthError {
    return new AuthError(401, "token_revoked", "token revoked");
  }

  static csrf(): AuthError {
    return new AuthError(403, "csrf_failed", "CSRF check failed");
  }

  static forbidden(permission: string): AuthError {
    return new AuthError(403, "forbidden", `missing permission \`${permission}\``);
  }

  static unavailable(): AuthError {
    return new AuthError(503, "verification_unavailable", "token verification unavailable");
  }

  /** The `WWW-Authenticate` challenge (RFC 6750 §3), if any. */
  get challenge(): string | undefined {
    if (this.code === "unauthenticated") return "Bearer";
    if (this.code === "forbidden") return 'Bearer error="insufficient_scope"';
    if (this.status === 401) return 'Bearer error="invalid_token"';
    return undefined;
  }

  /** Headers to answer with: the problem+json type, `no-store`, and the challenge. */
  get headers(): Record<string, string> {
    const headers: Record<string, string> = {
      "content-type": "application/problem+json",
      "cache-control": "no-store",
    };
    const challenge = this.challenge;
    if (challenge !== undefined) headers["www-authenticate"] = challenge;
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

/** A verifier that could not start: it would accept what it should not, so it does not start. */
export class SetupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "SetupError";
  }
}
