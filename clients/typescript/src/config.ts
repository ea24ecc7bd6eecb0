// The platform configuration a frontend loads at start instead of build-time
// `NEXT_PUBLIC_ENABLE_*` variables: `GET /api/v1/platform/config`, public flags before sign-in
// and every flag evaluated for the signed-in user after, under the names the backend uses
// (the frontend's older names are aliases on the server).
//
// The loader keeps the last answer and its ETag, so a reload that changed nothing is a 304 with
// no body; `follow()` reloads whenever the real-time hub's `flags` channel says a flag changed,
// so a toggle in the console reaches open pages without a reload.

import type { RealtimeConnection } from "./realtime.js";

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
export interface ConfigLoaderOptions {
  /** Tessera's public URL (default: same origin). */
  tesseraUrl?: string;
  /** A fetch (default the global one); in a browser, `createTesseraFetch()`'s. */
  fetch?: typeof fetch;
  /** A bearer token, for server-side rendering on behalf of a user. */
  accessToken?: string;
}

/** Loads, caches and revalidates the platform configuration. */
export class PlatformConfigLoader {
  private readonly url: string;
  private readonly options: ConfigLoaderOptions;
  private etag: string | null = null;
  private current: PlatformConfig | null = null;
  private readonly listeners = new Set<(config: PlatformConfig) => void>();

  constructor(options: ConfigLoaderOptions = {}) {
    const base = (options.tesseraUrl ?? "").replace(/\/+$/, "");
    this.url = `${base}/api/v1/platform/config`;
    this.options = options;
  }

  /** Fetches the configuration; a 304 keeps the last one. Listeners hear of real changes. */
  async load(): Promise<PlatformConfig> {
    const headers: Record<string, string> = { accept: "application/json" };
    if (this.etag !== null && this.current !== null) headers["if-none-match"] = this.etag;
    if (this.options.accessToken !== undefined) headers.authorization = `Bearer ${this.options.accessToken}`;
    const doFetch = this.options.fetch ?? globalThis.fetch.bind(globalThis);
    const response = await doFetch(this.url, { headers, credentials: "include" });
    if (response.status === 304 && this.current !== null) return this.current;
    if (!response.ok) throw new Error(`platform config: ${this.url} answered ${response.status}`);
    const config = (await response.json()) as PlatformConfig;
    this.current = config;
    this.etag = response.headers.get("etag");
    for (const listener of this.listeners) listener(config);
    return config;
  }

  /** The last configuration loaded, if any. */
  get config(): PlatformConfig | null {
    return this.current;
  }

  /** Calls `listener` after each load that brought a new configuration. */
  onChange(listener: (config: PlatformConfig) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Reloads whenever the hub's `flags` channel announces a change (`flag.changed`; subscribe
   * the connection to `flags`). Returns a function that stops following.
   */
  follow(realtime: RealtimeConnection): () => void {
    const reload = () => void this.load().catch(() => undefined);
    return realtime.on("flag.changed", reload);
  }

  /** A bool flag, or `fallback` when unknown or not a bool. */
  enabled(flag: string, fallback = false): boolean {
    const value = this.current?.features[flag];
    return typeof value === "boolean" ? value : fallback;
  }

  /** A string flag, or `fallback`. */
  string(flag: string, fallback: string): string {
    const value = this.current?.features[flag];
    return typeof value === "string" ? value : fallback;
  }

  /** A number flag, or `fallback`. */
  number(flag: string, fallback: number): number {
    const value = this.current?.features[flag];
    return typeof value === "number" ? value : fallback;
  }

  /** An object flag, or `fallback`. */
  object<T extends { [key: string]: unknown }>(flag: string, fallback: T): T {
    const value = this.current?.features[flag];
    return typeof value === "object" && value !== null ? (value as T) : fallback;
  }
}

/** Loads the configuration once. */
export async function loadPlatformConfig(options: ConfigLoaderOptions = {}): Promise<PlatformConfig> {
  return new PlatformConfigLoader(options).load();
}
