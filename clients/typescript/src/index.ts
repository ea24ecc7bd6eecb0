// tessera-client: what every Tessera client shares, for Node and browsers alike. The Node
// verifier is in `tessera-client/node`, the browser fetch wrapper in `tessera-client/browser`.
export { AuthError, SetupError, type Problem } from "./errors.js";
export { hasPermission, isPermission } from "./permissions.js";
