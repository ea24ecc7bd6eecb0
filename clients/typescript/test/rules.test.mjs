// The package's rules without a Tessera: permissions, token extraction, CSRF, the event-stream
// parser and revocation matching.
import assert from "node:assert/strict";
import { test } from "node:test";

import { AuthError, RevocationSet, SseParser, checkCsrf, DEFAULT_CSRF, extractToken, hasPermission } from "../dist/node/index.js";
import { readCookie } from "../dist/browser/index.js";

// The same rules the Rust SDK and the Python package are held to.
const PERMISSION_RULES = [
  ["reports:write", "reports:write", true],
  ["openid reports:write", "reports:write", true],
  ["reports:read", "reports:write", false],
  ["", "reports:write", false],
  ["reports:*", "reports:write", true],
  ["*:read", "users:read", true],
  ["*:read", "users:write", false],
  ["*:*", "users:delete", true],
  ["users:read", "users:*", false],
  ["users:*", "users:*", true],
  ["*:read", "*:*", false],
  ["*:*", "*:*", true],
  ["Reports:write", "reports:write", false],
  ["reports:write", "not a permission", false],
];

test("permissions follow Tessera's wildcard rule", () => {
  for (const [scope, wanted, allowed] of PERMISSION_RULES) {
    assert.equal(hasPermission(scope, wanted), allowed, `${scope} → ${wanted}`);
  }
});

const codeOf = (call) => {
  try {
    call();
  } catch (error) {
    assert.ok(error instanceof AuthError, String(error));
    return error.code;
  }
  assert.fail("not refused");
};

test("tokens come from the Bearer header, then the cookie, never the query", () => {
  assert.deepEqual(extractToken({ authorization: "Bearer abc" }), { token: "abc", viaCookie: false });
  assert.deepEqual(extractToken({ authorization: "bearer  abc " }), { token: "abc", viaCookie: false });
  assert.deepEqual(extractToken({ cookie: "theme=dark; access_token=abc" }), { token: "abc", viaCookie: true });
  assert.deepEqual(extractToken({ authorization: "Bearer abc", cookie: "access_token=zzz" }), { token: "abc", viaCookie: false });
  assert.equal(extractToken({ cookie: "access_token=" }), undefined);
  assert.equal(extractToken({}), undefined);
  for (const headers of [
    { authorization: "Basic dXNlcjpwdw==", cookie: "access_token=abc" },
    { authorization: "Bearer a b" },
    { authorization: ["Bearer a", "Bearer b"] },
    { cookie: "access_token=a; access_token=b" },
    { cookie: ["access_token=a", "access_token=b"] },
    { authorization: `Bearer ${"a".repeat(9000)}` },
  ]) {
    assert.equal(codeOf(() => extractToken(headers)), "invalid_credential", JSON.stringify(headers).slice(0, 80));
  }
});

test("cookie requests need the double submit and an allowed origin", () => {
  const base = { cookie: "access_token=t; csrf_token=proof", host: "app.example" };
  const ok = [
    { ...base, "x-csrf-token": "proof", origin: "https://app.example" },
    { ...base, "x-csrf-token": "proof", referer: "https://app.example/page" },
  ];
  for (const headers of ok) checkCsrf(DEFAULT_CSRF, headers);
  const refused = [
    { ...base, "x-csrf-token": "proof" },
    { ...base, "x-csrf-token": "proof", origin: "https://evil.example" },
    { ...base, "x-csrf-token": "proof", origin: "null" },
    { ...base, "x-csrf-token": "other", origin: "https://app.example" },
    { ...base, origin: "https://app.example" },
    { ...base, "x-csrf-token": ["proof", "proof"], origin: "https://app.example" },
  ];
  for (const headers of refused) assert.equal(codeOf(() => checkCsrf(DEFAULT_CSRF, headers)), "csrf_failed");
  const listed = { ...DEFAULT_CSRF, allowedOrigins: ["https://app.example"] };
  checkCsrf(listed, { ...base, host: "api.example", "x-csrf-token": "proof", origin: "https://app.example" });
});

test("the event-stream parser reads ids, events, data and comments", () => {
  const parser = new SseParser();
  const lines = [": keep-alive", "id: 7", "event: revocation", 'data: {"a":', "data: 1}", "", "event: ready", ""];
  const events = lines.map((l) => parser.line(l)).filter((e) => e !== undefined);
  assert.deepEqual(events, [{ id: "7", event: "revocation", data: '{"a":\n1}' }]);
});

test("revocations cover tokens by session, subject, jti and tenant", () => {
  const now = Date.now() / 1000;
  const future = Math.floor(now) + 600;
  const set = new RevocationSet();
  for (const entry of [
    { tid: "t1", kind: "session", sid: "s1", revoked_at: 1, expires_at: future },
    { tid: "t1", kind: "subject", sub: "u2", issued_before: 100, revoked_at: 1, expires_at: future },
    { tid: "t1", kind: "token", jti: "j3", revoked_at: 1, expires_at: future },
    { tid: "t2", kind: "tenant", issued_before: 100, revoked_at: 1, expires_at: future },
  ]) {
    assert.ok(set.insert(entry, now, 30));
  }
  assert.ok(!set.insert({ tid: "t1", kind: "galaxy", revoked_at: 1, expires_at: future }, now, 30));
  const claims = { tid: "t1", sub: "u1", sid: "s0", jti: "j0", iat: 50 };
  assert.ok(!set.covers(claims));
  assert.ok(set.covers({ ...claims, sid: "s1" }));
  assert.ok(!set.covers({ ...claims, sid: "s1", tid: "t9" }), "never across tenants");
  assert.ok(set.covers({ ...claims, sub: "u2" }));
  assert.ok(!set.covers({ ...claims, sub: "u2", iat: 101 }));
  assert.ok(set.covers({ ...claims, jti: "j3" }));
  assert.ok(set.covers({ ...claims, tid: "t2" }));
  set.prune(future + 31, 30);
  assert.equal(set.size, 0);
});

test("the browser wrapper reads cookies as document.cookie holds them", () => {
  assert.equal(readCookie("a=1; csrf_token=x%20y; b=2", "csrf_token"), "x y");
  assert.equal(readCookie("a=1", "csrf_token"), undefined);
});
