// The CSRF rule for cookie-authenticated requests, the same as Tessera's own: an unsafe request
// (not GET, HEAD, OPTIONS, TRACE) carried by the access cookie must send `X-CSRF-Token` equal
// to the CSRF cookie, each exactly once, from an allowed origin (`Origin`, else the origin of
// `Referer`): a listed one or, with no list, the request's own host. Bearer requests need none.

import { timingSafeEqual } from "node:crypto";

import { AuthError } from "../errors.js";
import { cookieValue } from "./extract.js";
import { headerValues, type HeaderSource } from "./headers.js";

export const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS", "TRACE"]);

/** Where the proof is read and which origins may send one. */
export interface CsrfPolicy {
  cookieName: string;
  headerName: string;
  /** Serialized origins (`https://app.example.com`). Empty: only the request's own host. */
  allowedOrigins: string[];
}

export const DEFAULT_CSRF: CsrfPolicy = {
  cookieName: "csrf_token",
  headerName: "x-csrf-token",
  allowedOrigins: [],
};

/** The origin a request names: `Origin` as sent, else `Referer`'s origin; or undefined. */
export function requestOrigin(headers: HeaderSource): string | undefined {
  const [origin] = headerValues(headers, "origin");
  if (origin !== undefined) return origin;
  const [referer] = headerValues(headers, "referer");
  if (referer === undefined) return undefined;
  try {
    const url = new URL(referer);
    return url.protocol === "http:" || url.protocol === "https:" ? url.origin : undefined;
  } catch {
    return undefined;
  }
}

function allows(policy: CsrfPolicy, origin: string, headers: HeaderSource): boolean {
  if (policy.allowedOrigins.length > 0) return policy.allowedOrigins.includes(origin);
  const [host] = headerValues(headers, "host");
  if (host === undefined) return false;
  const authority = origin.replace(/^https?:\/\//, "");
  return authority !== origin && authority === host.toLowerCase();
}

/** Throws `AuthError.csrf()` unless the request carries the proof. */
export function checkCsrf(policy: CsrfPolicy, headers: HeaderSource): void {
  const origin = requestOrigin(headers);
  if (origin === undefined || !allows(policy, origin, headers)) throw AuthError.csrf();
  const sent = headerValues(headers, policy.headerName.toLowerCase());
  if (sent.length !== 1 || sent[0] === undefined) throw AuthError.csrf();
  let cookie: string | undefined;
  try {
    cookie = cookieValue(headers, policy.cookieName);
  } catch {
    throw AuthError.csrf();
  }
  const a = Buffer.from(sent[0]);
  const b = Buffer.from(cookie ?? "");
  if (cookie === undefined || a.length !== b.length || !timingSafeEqual(a, b)) {
    throw AuthError.csrf();
  }
}
