// A small node:http service trusting Tessera's access tokens through `tessera-auth`.
//
//   TESSERA_ISSUER=http://127.0.0.1:8080 TESSERA_AUDIENCE=platform PORT=8000 node dist/server.js

import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

import { TesseraAuth, TesseraAuthError, requirePermission } from "./tessera-auth.js";

const auth = new TesseraAuth({
  issuer: process.env.TESSERA_ISSUER ?? "http://127.0.0.1:8080",
  audience: process.env.TESSERA_AUDIENCE ?? "platform",
});

function send(
  response: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = { "content-type": "application/json" },
): void {
  response.writeHead(status, headers).end(JSON.stringify(body));
}

async function route(request: IncomingMessage, response: ServerResponse): Promise<void> {
  const path = new URL(request.url ?? "/", "http://localhost").pathname;
  if (request.method === "GET" && path === "/whoami") {
    const caller = await auth.authenticate(request.headersDistinct);
    send(response, 200, { sub: caller.sub, tid: caller.tid, roles: caller.roles });
  } else if (request.method === "POST" && path === "/reports") {
    const caller = await auth.authenticate(request.headersDistinct);
    requirePermission(caller, "reports:write");
    send(response, 201, { created_by: caller.sub, tid: caller.tid });
  } else {
    send(response, 404, { error: "not found" });
  }
}

const server = createServer((request, response) => {
  route(request, response).catch((error: unknown) => {
    if (error instanceof TesseraAuthError) {
      send(response, error.status, error.problem, error.headers);
    } else {
      console.error(error);
      send(response, 500, { error: "internal error" });
    }
  });
});

server.listen(Number(process.env.PORT ?? 8000), "127.0.0.1", () => {
  const { port } = server.address() as AddressInfo;
  // The tests start the server on port 0 and read the chosen port from this line.
  console.log(`listening on http://127.0.0.1:${port}`);
});
