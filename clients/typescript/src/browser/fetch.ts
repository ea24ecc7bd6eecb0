// A `fetch` for browser code talking to Tessera-protected APIs with Tessera's cookies:
//
// - credentials are always included (the HttpOnly access and refresh cookies travel by
//   themselves; no token is ever in JavaScript or `localStorage`);
// - unsafe requests (not GET, HEAD, OPTIONS, TRACE) carry `X-CSRF-Token` with the value of the
//   readable `csrf_token` cookie;
// - a 401 triggers one refresh (`POST /api/v1/auth/refresh`, which rotates the cookies) and one
//   retry; concurrent 401s share that refresh;
// - when the refresh fails, `onSignOut` is called (send the user to the login page) and the
//   401 is returned.

/** Settings for `createTesseraFetch`. */
export interface TesseraFetchOptions {
  /** Tessera's public URL, for the refresh call (default: same origin). */
  tesseraUrl?: string;
  /** Path of the refresh endpoint. */
  refreshPath?: string;
  /** Name of the readable CSRF cookie and of the header carrying it. */
  csrfCookie?: string;
  csrfHeader?: string;
  /** Called once a refresh has failed: the session is over. */
  onSignOut?: () => void;
  /** Where the cookies are read (default `document.cookie`). */
  cookies?: () => string;
  /** The underlying fetch (default the global one). */
  fetch?: typeof fetch;
}

const SAFE_METHODS = new Set(["GET", "HEAD", "OPTIONS", "TRACE"]);

/** The value of cookie `name` in a `document.cookie` string. */
export function readCookie(cookies: string, name: string): string | undefined {
  for (const pair of cookies.split(";")) {
    const eq = pair.indexOf("=");
    if (eq >= 0 && pair.slice(0, eq).trim() === name) {
      const value = pair.slice(eq + 1).trim();
      try {
        return decodeURIComponent(value);
      } catch {
        return value;
      }
    }
  }
  return undefined;
}

/** A `fetch` with Tessera's browser rules (see the module comment). */
export function createTesseraFetch(options: TesseraFetchOptions = {}): typeof fetch {
  const base = options.fetch ?? globalThis.fetch.bind(globalThis);
  const tesseraUrl = (options.tesseraUrl ?? "").replace(/\/+$/, "");
  const refreshUrl = tesseraUrl + (options.refreshPath ?? "/api/v1/auth/refresh");
  const csrfCookie = options.csrfCookie ?? "csrf_token";
  const csrfHeader = options.csrfHeader ?? "X-CSRF-Token";
  const cookies = options.cookies ?? (() => (typeof document === "undefined" ? "" : document.cookie));
  let refreshing: Promise<boolean> | undefined;

  const send = (input: RequestInfo | URL, init: RequestInit | undefined): Promise<Response> => {
    const method = (init?.method ?? (input instanceof Request ? input.method : "GET")).toUpperCase();
    const headers = new Headers(init?.headers ?? (input instanceof Request ? input.headers : undefined));
    const csrf = readCookie(cookies(), csrfCookie);
    if (!SAFE_METHODS.has(method) && csrf !== undefined && !headers.has(csrfHeader)) {
      headers.set(csrfHeader, csrf);
    }
    return base(input, { ...init, method, headers, credentials: "include" });
  };

  const refresh = (): Promise<boolean> => {
    refreshing ??= send(refreshUrl, { method: "POST" })
      .then((response) => response.ok)
      .catch(() => false)
      .finally(() => {
        refreshing = undefined;
      });
    return refreshing;
  };

  return async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    // A body stream can be read once: keep a copy of a Request so the retry can resend it.
    const retryable = input instanceof Request ? input.clone() : input;
    const response = await send(input, init);
    const url = typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
    if (response.status !== 401 || url.startsWith(refreshUrl)) return response;
    if (!(await refresh())) {
      options.onSignOut?.();
      return response;
    }
    return send(retryable, init);
  };
}
