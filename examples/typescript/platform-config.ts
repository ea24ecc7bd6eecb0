// The platform configuration loader a frontend (a Next.js app, say) calls at start instead of
// reading build-time `NEXT_PUBLIC_ENABLE_*` variables: `GET /api/v1/platform/config` from
// Tessera, public flags before sign-in and every flag for the signed-in user after, with the
// same names the backend uses (and the frontend's older names as aliases).
//
// Revalidation is cheap: the loader keeps the last answer and its ETag, so a reload that
// changed nothing is a 304 with no body.

/** A flag's value: flags are bool, string, number or object. */
export type FlagValue = boolean | string | number | { [key: string]: unknown };

/** What `GET /api/v1/platform/config` answers. */
export interface PlatformConfig {
  app: { name: string; version: string; environment: string };
  features: Record<string, FlagValue>;
  api: {
    rest_url: string;
    graphql_url: string | null;
    realtime: { sse_url: string; ws_url: string };
  };
  auth: {
    login_url: string;
    cookie_names: { access_token: string; refresh_token: string; csrf_token: string };
    csrf_header: string;
  };
  branding: Record<string, string>;
}

/** How the loader reaches Tessera. */
export interface LoaderOptions {
  /** A fetch implementation (defaults to the global one). */
  fetch?: typeof fetch;
  /** `include` in a browser on another origin, so the session cookie is sent. */
  credentials?: RequestCredentials;
  /** A bearer token, for server-side rendering on behalf of a user. */
  accessToken?: string;
}

/** Loads and caches the platform configuration of the Tessera at `baseUrl`. */
export class PlatformConfigLoader {
  private readonly url: string;
  private readonly options: LoaderOptions;
  private etag: string | null = null;
  private current: PlatformConfig | null = null;

  constructor(baseUrl: string, options: LoaderOptions = {}) {
    this.url = `${baseUrl.replace(/\/+$/, '')}/api/v1/platform/config`;
    this.options = options;
  }

  /** Fetches the configuration (a 304 reuses the last one). */
  async load(): Promise<PlatformConfig> {
    const headers: Record<string, string> = { Accept: 'application/json' };
    if (this.etag !== null && this.current !== null) headers['If-None-Match'] = this.etag;
    if (this.options.accessToken !== undefined) {
      headers['Authorization'] = `Bearer ${this.options.accessToken}`;
    }
    const init: RequestInit = { headers };
    if (this.options.credentials !== undefined) init.credentials = this.options.credentials;
    const fetchImpl = this.options.fetch ?? fetch;
    const response = await fetchImpl(this.url, init);
    if (response.status === 304 && this.current !== null) return this.current;
    if (!response.ok) {
      throw new Error(`platform config: ${this.url} answered ${response.status}`);
    }
    const config = (await response.json()) as PlatformConfig;
    this.current = config;
    this.etag = response.headers.get('ETag');
    return config;
  }

  /** The last configuration loaded, if any. */
  get config(): PlatformConfig | null {
    return this.current;
  }

  /** A bool flag from the last load, or `fallback` when unknown or not a bool. */
  enabled(flag: string, fallback = false): boolean {
    const value = this.current?.features[flag];
    return typeof value === 'boolean' ? value : fallback;
  }
}

/** One-shot helper: loads the configuration once. */
export async function loadPlatformConfig(
  baseUrl: string,
  options: LoaderOptions = {},
): Promise<PlatformConfig> {
  return new PlatformConfigLoader(baseUrl, options).load();
}
