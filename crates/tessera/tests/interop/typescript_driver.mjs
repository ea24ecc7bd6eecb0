// Drives the compiled TypeScript example (examples/typescript) for the integration tests: starts
// its server.js on a free port and sends it the requests the test asks for.
//
//   node typescript_driver.mjs COMPILED_DIR < cases.json
//
// Input and output are the same as fastapi_driver.py's: {"issuer", "audience", "requests",
// "permissions"} in, {"responses", "permissions"} out, in order; the test asserts on them.
import { spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const REPORTED_HEADERS = ["content-type", "www-authenticate", "cache-control"];

const [compiledDir] = process.argv.slice(2);
if (!compiledDir) {
  console.error("usage: node typescript_driver.mjs COMPILED_DIR < cases.json");
  process.exit(2);
}

let input = "";
for await (const chunk of process.stdin) {
  input += chunk;
}
const cases = JSON.parse(input);

const server = spawn(process.execPath, [join(compiledDir, "server.js")], {
  env: {
    ...process.env,
    PORT: "0",
    TESSERA_ISSUER: cases.issuer,
    TESSERA_AUDIENCE: cases.audience,
  },
  stdio: ["ignore", "pipe", "inherit"],
});
try {
  const base = await listeningAddress(server);
  const responses = [];
  for (const request of cases.requests) {
    const response = await fetch(base + request.path, {
      method: request.method,
      headers: new Headers(request.headers),
    });
    const headers = {};
    for (const name of REPORTED_HEADERS) {
      const value = response.headers.get(name);
      if (value !== null) {
        headers[name] = value;
      }
    }
    responses.push({ status: response.status, headers, body: await response.json() });
  }
  const { hasPermission } = await import(pathToFileURL(join(compiledDir, "tessera-auth.js")).href);
  const permissions = cases.permissions.map(([scope, wanted]) => hasPermission(scope, wanted));
  process.stdout.write(JSON.stringify({ responses, permissions }) + "\n");
} finally {
  server.kill();
}

/** The server's base URL, from the line it prints once listening. */
async function listeningAddress(child) {
  const exited = once(child, "exit").then(([code]) => {
    throw new Error(`server.js exited (${code}) before listening`);
  });
  const lines = createInterface({ input: child.stdout });
  const listening = (async () => {
    for await (const line of lines) {
      const found = /^listening on (http:\/\/\S+)$/.exec(line);
      if (found) {
        return found[1];
      }
    }
    throw new Error("server.js closed its output before listening");
  })();
  return Promise.race([listening, exited]);
}
