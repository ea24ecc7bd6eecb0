// tessera-client/browser: browser code calling Tessera-protected APIs with cookies.
export { createTesseraFetch, readCookie, type TesseraFetchOptions } from "./fetch.js";
export { AuthError, type Problem } from "../errors.js";
export { hasPermission, isPermission } from "../permissions.js";
export { PlatformConfigLoader, loadPlatformConfig, type ConfigLoaderOptions, type PlatformConfig } from "../config.js";
export { connectRealtime, type RealtimeConnection, type RealtimeEvent, type RealtimeOptions } from "../realtime.js";
