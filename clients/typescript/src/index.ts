// tessera-client: what every Tessera client shares, for Node and browsers alike: errors,
// permissions, the platform configuration loader and the real-time helper. The Node verifier is
// in `tessera-client/node`, the browser fetch wrapper in `tessera-client/browser`.
export { AuthError, SetupError, type Problem } from "./errors.js";
export { hasPermission, isPermission } from "./permissions.js";
export { PlatformConfigLoader, loadPlatformConfig, type ConfigLoaderOptions, type FlagValue, type PlatformConfig } from "./config.js";
export {
  connectRealtime,
  type EventSourceConstructor,
  type RealtimeConnection,
  type RealtimeEvent,
  type RealtimeOptions,
  type RealtimeState,
  type WebSocketConstructor,
} from "./realtime.js";
