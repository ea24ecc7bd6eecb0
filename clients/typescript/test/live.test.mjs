// The package against a live Tessera named by environment variables (Tessera's suite starts one
// and sets them; see crates/tessera/tests/api/typescript_client.rs): the shared request table
// through a node:http service, a revoked session refused within a second, permissions from real
// roles, and the browser fetch wrapper on real cookies (CSRF, refresh-and-retry, sign-out).
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { once } from "node:events";
import { readFileSync } from "node:fs";
import { after, before, test } from "node:test";

import { AuthError, SetupError, Verifier, requirePermission } from "../dist/node/index.js";
import { createTesseraFetch } from "../dist/browser/index.js";
import { PlatformConfigLoader, connectRealtime } from "../dist/index.js";
import { EventSource } from "eventsource";

const env = process.env;
const live = env.TESSERA_TEST_ISSUER !== undefined;
const skip = live ? false : "no live Tessera: run through `cargo test -p tessera --test api typescript_client`";
const issuer = env.TESSERA_TEST_ISSUER ?? "";
const audience = env.TESSERA_TEST_AUDIENCE ?? "";
const password = env.TESSERA_TEST_PASSWORD ?? "";

/** Resolves once `check()` holds, polling; fails after `ms`. */
async function until(check, what, ms = 10_000) {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A small service on the package, as a platform would write it. */
function service(verifier) {
  const answer = (response, status, body, headers = {}) => {
    response.writeHead(status, { "content-type": "application/json", ...headers });
    response.end(JSON.stringify(body));
  };
  return createServer(async (request, response) => {
    try {
      if (request.url === "/healthz") return answer(response, 200, verifier.health());
      const identity = await verifier.authenticate(request.method ?? "GET", request.headersDistinct);
      if (request.method === "GET" && request.url === "/whoami") {
        return answer(response, 200, { sub: identity.sub, tid: identity.tid, roles: identity.roles });
      }
      if (request.method === "POST" && request.url === "/reports") {
        requirePermission(identity, "reports:write");
        return answer(response, 201, { created_by: identity.sub, tid: identity.tid });
      }
      if (request.method === "GET" && request.url === "/admin/stats") {
        requirePermission(identity, "stats:read");
        return answer(response, 200, { tenant: identity.tid, reports: 0 });
      }
      return answer(response, 404, {});
    } catch (error) {
      if (!(error instanceof AuthError)) throw error;
      return answer(response, error.status, error.problem, error.headers);
    }
  });
}

let verifier;
let server;
let base;

before(async () => {
  if (!live) return;
  verifier = await Verifier.start({
    issuer,
    audience,
    clientId: env.TESSERA_TEST_CLIENT_ID,
    clientSecret: env.TESSERA_TEST_CLIENT_SECRET,
  });
  server = service(verifier);
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  base = `http://127.0.0.1:${server.address().port}`;
});

after(() => {
  verifier?.close();
  server?.close();
});

async function login(email, delivery = "body") {
  const response = await fetch(`${issuer}/api/v1/auth/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ login: email, password, delivery }),
  });
  assert.equal(response.status, 200);
  return response.json();
}

async function logout(token) {
  const response = await fetch(`${issuer}/api/v1/auth/logout`, { method: "POST", headers: { authorization: `Bearer ${token}` } });
  assert.equal(response.status, 204);
}

test("the Node service answers the shared table", { skip }, async () => {
  const table = JSON.parse(readFileSync(env.TESSERA_TEST_TABLE, "utf8"));
  for (const c of table.requests) {
    const response = await fetch(base + c.path, { method: c.method, headers: new Headers(c.headers) });
    const body = await response.json();
    const context = `${c.name}: ${response.status} ${JSON.stringify(body)}`;
    assert.equal(response.status, c.status, context);
    if ("body" in c) {
      assert.deepEqual(body, c.body, context);
      continue;
    }
    assert.equal(response.headers.get("content-type"), "application/problem+json", context);
    assert.equal(response.headers.get("cache-control"), "no-store", context);
    assert.equal(body.code, c.code, context);
    assert.equal(body.type, `urn:tessera:problem:${c.code}`, context);
    const challenge = c.code === "unauthenticated" ? "Bearer" : c.status === 401 ? 'Bearer error="invalid_token"' : 'Bearer error="insufficient_scope"';
    assert.equal(response.headers.get("www-authenticate"), challenge, context);
  }
});

test("a revoked session is refused within a second", { skip }, async () => {
  const tokens = await login("ada@example.com");
  const whoami = () => fetch(`${base}/whoami`, { headers: { authorization: `Bearer ${tokens.access_token}` } });
  assert.equal((await whoami()).status, 200);
  const deadline = Date.now() + 5000;
  while (verifier.revocationsLive !== true) {
    assert.ok(Date.now() < deadline, "the feed never caught up");
    await new Promise((r) => setTimeout(r, 20));
  }
  const revokedAt = performance.now();
  await logout(tokens.access_token);
  for (;;) {
    const response = await whoami();
    if (response.status === 401) {
      assert.equal((await response.json()).code, "token_revoked");
      break;
    }
    assert.equal(response.status, 200);
    assert.ok(performance.now() - revokedAt < 1000, "still accepted after a second");
    await new Promise((r) => setTimeout(r, 10));
  }
  const elapsed = performance.now() - revokedAt;
  assert.ok(elapsed < 1000, `refused only after ${elapsed} ms`);
  const health = await (await fetch(`${base}/healthz`)).json();
  assert.equal(health.revocations_live, true);
});

test("a verifier started after a revocation refuses it at once", { skip }, async () => {
  const tokens = await login("ada@example.com");
  await logout(tokens.access_token);
  const late = await Verifier.start({ issuer, audience, clientId: env.TESSERA_TEST_CLIENT_ID, clientSecret: env.TESSERA_TEST_CLIENT_SECRET });
  try {
    await assert.rejects(late.verify(tokens.access_token), (e) => e instanceof AuthError && e.code === "token_revoked");
  } finally {
    late.close();
  }
  await assert.rejects(
    Verifier.start({ issuer, audience, clientId: env.TESSERA_TEST_CLIENT_ID, clientSecret: "wrong" }),
    (e) => e instanceof SetupError && /revocation feed/.test(e.message),
  );
});

test("permissions come from the roles Tessera grants", { skip }, async () => {
  const bearer = async (email) => ({ authorization: `Bearer ${(await login(email)).access_token}` });
  const [admin, user, viewer] = [await bearer("root@example.com"), await bearer("ada@example.com"), await bearer("vic@example.com")];
  const call = async (method, path, headers) => {
    const response = await fetch(base + path, { method, headers });
    return [response.status, (await response.json()).code];
  };
  assert.equal((await call("POST", "/reports", admin))[0], 201);
  assert.equal((await call("GET", "/admin/stats", viewer))[0], 200, "*:read covers stats:read");
  assert.deepEqual(await call("POST", "/reports", user), [403, "forbidden"]);
  assert.deepEqual(await call("POST", "/reports", viewer), [403, "forbidden"]);
  assert.deepEqual(await call("GET", "/admin/stats", user), [403, "forbidden"]);
  assert.deepEqual(await call("POST", "/reports", { authorization: "Bearer not.a.token" }), [401, "token_malformed"]);
});

/** A browser's cookie handling in miniature: a jar honouring `Path`, `Origin` on every request,
 * and `document.cookie` showing the cookies that are not HttpOnly. Records what was sent. */
function browser() {
  const jar = new Map();
  const sent = [];
  const origin = new URL(issuer).origin;
  const browserFetch = async (input, init = {}) => {
    const url = new URL(typeof input === "string" ? input : input.url);
    const headers = new Headers(init.headers);
    const cookie = [...jar.values()].filter((c) => url.pathname.startsWith(c.path)).map((c) => `${c.name}=${c.value}`).join("; ");
    if (cookie) headers.set("cookie", cookie);
    headers.set("origin", origin);
    sent.push({ method: init.method ?? "GET", path: url.pathname, headers });
    assert.equal(init.credentials, "include");
    const response = await fetch(url, { ...init, headers });
    for (const line of response.headers.getSetCookie()) {
      const [pair, ...attributes] = line.split(";").map((s) => s.trim());
      const eq = pair.indexOf("=");
      const name = pair.slice(0, eq);
      const path = attributes.find((a) => a.toLowerCase().startsWith("path="))?.slice(5) ?? "/";
      const httpOnly = attributes.some((a) => a.toLowerCase() === "httponly");
      const value = pair.slice(eq + 1);
      if (value === "" || attributes.some((a) => /^max-age=0$/i.test(a))) jar.delete(name);
      else jar.set(name, { name, value, path, httpOnly });
    }
    return response;
  };
  const documentCookie = () => [...jar.values()].filter((c) => !c.httpOnly).map((c) => `${c.name}=${c.value}`).join("; ");
  return { jar, sent, browserFetch, documentCookie };
}

test("the browser wrapper sends CSRF headers, refreshes once on 401, and signs out when refresh fails", { skip }, async () => {
  const { jar, sent, browserFetch, documentCookie } = browser();
  let signedOut = 0;
  const api = createTesseraFetch({ tesseraUrl: issuer, fetch: browserFetch, cookies: documentCookie, onSignOut: () => signedOut++ });
  const me = () => api(`${issuer}/api/v1/auth/me`);

  const loggedIn = await api(`${issuer}/api/v1/auth/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ login: "ada@example.com", password, delivery: "cookie" }),
  });
  assert.equal(loggedIn.status, 200);
  assert.ok(jar.has("access_token") && jar.has("refresh_token") && jar.has("csrf_token"), [...jar.keys()].join());
  assert.ok(!documentCookie().includes("access_token"), "HttpOnly cookies are not readable");
  assert.equal((await me()).status, 200);
  assert.equal(sent.at(-1).headers.get("x-csrf-token"), null, "safe methods carry no CSRF header");

  const revokeOthers = await api(`${issuer}/api/v1/auth/sessions/revoke-others`, { method: "POST" });
  assert.ok(revokeOthers.ok, `revoke-others answered ${revokeOthers.status}`);
  assert.equal(sent.at(-1).headers.get("x-csrf-token"), jar.get("csrf_token").value);

  // An access token the server no longer takes: one refresh, one retry, no sign-out.
  jar.get("access_token").value = "expired";
  const before = sent.length;
  assert.equal((await me()).status, 200);
  assert.deepEqual(sent.slice(before).map((r) => r.path), ["/api/v1/auth/me", "/api/v1/auth/refresh", "/api/v1/auth/me"]);
  assert.equal(signedOut, 0);

  // The refresh fails too: the 401 comes back and the app is told to sign out.
  jar.get("access_token").value = "expired";
  jar.get("refresh_token").value = "revoked";
  assert.equal((await me()).status, 401);
  assert.equal(signedOut, 1);
});

/** Root signed in through the browser wrapper, with its tenant and a second (Bearer) session. */
async function browserSession() {
  const browserSide = browser();
  let signedOut = 0;
  const api = createTesseraFetch({ tesseraUrl: issuer, fetch: browserSide.browserFetch, cookies: browserSide.documentCookie, onSignOut: () => signedOut++ });
  const loggedIn = await api(`${issuer}/api/v1/auth/login`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ login: "root@example.com", password, delivery: "cookie" }),
  });
  assert.equal(loggedIn.status, 200);
  const me = await (await api(`${issuer}/api/v1/auth/me`)).json();
  const tenant = me.tenant_id ?? me.user?.tenant_id;
  assert.ok(tenant, JSON.stringify(me));
  const bearer = (await login("root@example.com")).access_token;
  return { ...browserSide, api, tenant, bearer, signedOut: () => signedOut };
}

async function publish(bearer, channel, type, data) {
  const response = await fetch(`${issuer}/api/v1/realtime/publish`, {
    method: "POST",
    headers: { authorization: `Bearer ${bearer}`, "content-type": "application/json" },
    body: JSON.stringify({ channel, type, data }),
  });
  const text = await response.text();
  assert.equal(response.status, 201, text);
  return JSON.parse(text).id;
}

test("the platform config loader revalidates with its ETag and follows flag changes through the hub", { skip }, async () => {
  const { api, sent, tenant, bearer } = await browserSession();
  const loader = new PlatformConfigLoader({ tesseraUrl: issuer, fetch: api });
  const changes = [];
  loader.onChange((config) => changes.push(config.features.beta_banner));
  const first = await loader.load();
  assert.equal(first.features.beta_banner, false, JSON.stringify(first.features));
  assert.equal(loader.enabled("beta_banner", true), false);
  assert.equal(loader.string("beta_banner", "fallback"), "fallback", "typed getters never coerce");
  assert.equal(await loader.load(), first, "an unchanged configuration is the same object");
  assert.ok(sent.at(-1).headers.get("if-none-match"), "the second load revalidates");
  assert.deepEqual(changes, [false], "a 304 is not a change");

  const opened = [];
  const realtime = connectRealtime({ tesseraUrl: issuer, channels: ["flags"], fetch: api, EventSource, onOpen: (recovered) => opened.push(recovered) });
  try {
    loader.follow(realtime);
    await until(() => opened.length === 1, "the stream to open");
    // The tenant's administrator turns the flag on for the tenant: the page sees it live.
    const set = await fetch(`${issuer}/api/v1/admin/flags/beta_banner/tenants/${tenant}`, {
      method: "PUT",
      headers: { authorization: `Bearer ${bearer}`, "content-type": "application/json" },
      body: JSON.stringify({ value: true }),
    });
    assert.equal(set.status, 200, `override answered ${set.status}`);
    await until(() => loader.enabled("beta_banner") === true, "the override to reach the loader");
    assert.deepEqual(changes, [false, true]);
  } finally {
    realtime.close();
  }
  assert.equal(realtime.state, "closed");
});

test("the realtime helper delivers typed SSE events with tickets and signs out when the session ends", { skip }, async () => {
  const { api, sent, tenant, bearer, jar, signedOut } = await browserSession();
  const channel = `tenant:${tenant}:jobs`;
  const early = await publish(bearer, channel, "job.progress", { step: 0 });
  let ended = 0;
  const opened = [];
  const realtime = connectRealtime({ tesseraUrl: issuer, channels: [channel], fetch: api, EventSource, since: early - 1, onOpen: (r) => opened.push(r), onSignedOut: () => ended++ });
  after(() => realtime.close());
  const steps = [];
  realtime.on("job.progress", (event) => steps.push([event.channel, event.type, event.data.step]));
  await until(() => steps.length === 1, "the missed event from history");
  assert.deepEqual(opened, [true]);
  await publish(bearer, channel, "job.progress", { step: 1 });
  await until(() => steps.length === 2, "the live event");
  assert.deepEqual(steps, [[channel, "job.progress", 0], [channel, "job.progress", 1]]);
  const tickets = sent.filter((r) => r.path === "/api/v1/realtime/ticket");
  assert.equal(tickets.length, 1);
  assert.equal(tickets[0].headers.get("x-csrf-token"), jar.get("csrf_token").value, "the ticket request carries the CSRF header");
  assert.ok(!sent.some((r) => r.path.startsWith("/api/v1/realtime/sse")), "the stream itself carries no cookie: only the single-use ticket");

  // Signing out elsewhere (this session logs out through the API) ends the stream for good.
  const logout = await api(`${issuer}/api/v1/auth/logout`, { method: "POST" });
  assert.equal(logout.status, 204);
  await until(() => ended === 1, "auth.revoked");
  assert.equal(realtime.state, "closed");
  assert.equal(signedOut(), 0, "the fetch wrapper was not involved");
});

test("the realtime helper reconnects a dropped WebSocket with a fresh ticket and misses nothing", { skip }, async () => {
  const { api, sent, tenant, bearer } = await browserSession();
  const channel = `tenant:${tenant}:jobs`;
  const sockets = [];
  class Tracked extends WebSocket {
    constructor(url) {
      super(url);
      sockets.push(this);
    }
  }
  const opened = [];
  let ended = 0;
  const realtime = connectRealtime({ tesseraUrl: issuer, channels: [channel], transport: "websocket", WebSocket: Tracked, fetch: api, minDelayMs: 50, onOpen: (r) => opened.push(r), onSignedOut: () => ended++ });
  after(() => realtime.close());
  const seen = [];
  realtime.on("*", (event) => seen.push(event.data.n));
  await until(() => opened.length === 1, "the socket to open");
  await publish(bearer, channel, "job.progress", { n: 1 });
  await until(() => seen.length === 1, "the first event");
  // The network drops the socket; an event is published while it is down.
  sockets[0].close(4000, "network gone");
  await publish(bearer, channel, "job.progress", { n: 2 });
  await until(() => opened.length === 2, "the reconnect");
  await publish(bearer, channel, "job.progress", { n: 3 });
  await until(() => seen.length === 3, "every event");
  assert.deepEqual(seen, [1, 2, 3], "in order, none twice, none missed");
  assert.equal(sockets.length, 2);
  assert.ok(sockets.every((s) => !/token=/.test(s.url) && /ticket=/.test(s.url)), "tickets, never tokens, in the URL");
  assert.equal(sent.filter((r) => r.path === "/api/v1/realtime/ticket").length, 2, "one ticket per connection attempt");

  // The session revoked elsewhere: closed with 4401 and the page is told to sign out.
  const current = await (await api(`${issuer}/api/v1/auth/sessions/current`)).json();
  assert.ok(current.id, JSON.stringify(current));
  const revoke = await fetch(`${issuer}/api/v1/auth/sessions/${current.id}/revoke`, { method: "POST", headers: { authorization: `Bearer ${bearer}` } });
  assert.ok(revoke.status === 204 || revoke.status === 200, `revoke answered ${revoke.status}`);
  await until(() => ended === 1, "the 4401 close");
  assert.equal(realtime.state, "closed");
});
