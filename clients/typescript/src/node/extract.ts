// Where a request's token is read from, in Tessera's order: `Authorization: Bearer`, then the
// access-token cookie; never the query string. A credential present but unusable is an error,
// not "no credential": falling back would let a malformed header hide behind a cookie.

import { AuthError } from "../errors.js";
import { headerValues, type HeaderSource } from "./headers.js";

/** Longer than any token Tessera issues. */
export const MAX_TOKEN_BYTES = 8 * 1024;

/** A token and whether it came from the cookie (which makes the CSRF rule apply). */
export interface Credential {
  token: string;
  viaCookie: boolean;
}

const trimAscii = (text: string) => text.replace(/^[ \t\n\f\r]+|[ \t\n\f\r]+$/g, "");
// eslint-disable-next-line no-control-regex
const ASCII = /^[\x00-\x7f]*$/;

function checked(value: string): string {
  if (Buffer.byteLength(value) > MAX_TOKEN_BYTES) {
    throw AuthError.invalidCredential("credential too large");
  }
  return value;
}

/** The value of cookie `name`: sent twice is an error, empty is absent, quotes are dropped. */
export function cookieValue(headers: HeaderSource, name: string): string | undefined {
  let seen = false;
  let found: string | undefined;
  for (const header of headerValues(headers, "cookie")) {
    for (const pair of header.split(";")) {
      const eq = pair.indexOf("=");
      if (eq < 0 || trimAscii(pair.slice(0, eq)) !== name) continue;
      if (seen) throw AuthError.invalidCredential("ambiguous cookie");
      seen = true;
      const value = trimAscii(pair.slice(eq + 1)).replace(/^"+|"+$/g, "");
      if (value !== "" && ASCII.test(value)) found = checked(value);
    }
  }
  return found;
}

/** The request's credential, or `undefined` when it carries none. */
export function extractToken(
  headers: HeaderSource,
  cookieName = "access_token",
): Credential | undefined {
  const authorization = headerValues(headers, "authorization");
  if (authorization.length > 0) {
    const [value] = authorization;
    if (authorization.length > 1 || value === undefined || !ASCII.test(value)) {
      throw AuthError.invalidCredential("malformed Authorization header");
    }
    const space = value.indexOf(" ");
    const scheme = space < 0 ? value : value.slice(0, space);
    const token = space < 0 ? "" : value.slice(space + 1).replace(/^ +| +$/g, "");
    if (space < 0 || scheme.toLowerCase() !== "bearer" || token === "" || token.includes(" ")) {
      throw AuthError.invalidCredential("malformed Authorization header");
    }
    return { token: checked(token), viaCookie: false };
  }
  const cookie = cookieValue(headers, cookieName);
  return cookie === undefined ? undefined : { token: cookie, viaCookie: true };
}
