// The web console in a real browser: Playwright (playwright-core) driving Debian's Chromium
// against a live Tessera the Rust test started and seeded. Reads the scenario's accounts on
// stdin, walks every page as people use them, scans each with axe, saves screenshots at
// desktop and phone width, and prints {"problems": [...], "report": {...}} as JSON. Any
// console error, page error or CSP violation report is a problem, except the refusals the
// scenarios provoke on purpose (listed in EXPECTED_REFUSALS).
import { createHmac } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import AxeBuilder from '@axe-core/playwright';

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const input = JSON.parse(Buffer.concat(chunks).toString('utf8'));
const base = input.base_url;
mkdirSync(input.screenshots, { recursive: true });

const problems = [];
const report = { screenshots: [], axe_pages: 0, steps: [] };
const WAIT = { timeout: 15000 };
const DESKTOP = { width: 1280, height: 860 };
const PHONE = { width: 390, height: 844 };

// Chromium logs every 4xx answer of a fetch or EventSource as a console error. These are the
// ones a scenario causes on purpose: a wrong password, a revoked session's streams and checks,
// a page the caller lacks the permission for.
const EXPECTED_REFUSALS = [
  '/api/v1/auth/login',
  '/api/v1/auth/refresh',
  '/api/v1/auth/sessions/current',
  '/api/v1/realtime/sse',
  '/admin/users',
];
// The lockout and disabled-account scenarios provoke 403 and 429 sign-in refusals: covered by
// '/api/v1/auth/login' above.

function step(text) {
  report.steps.push(text);
  process.stderr.write(`console check: ${text}\n`);
}

// ---- TOTP (RFC 6238, SHA-1, 6 digits, 30 s), computed here from the secret the page shows --

function base32(text) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of text.replace(/=+$/, '').toUpperCase()) bits += alphabet.indexOf(c).toString(2).padStart(5, '0');
  const bytes = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(bytes);
}

function totp(secret, counter) {
  const message = Buffer.alloc(8);
  message.writeBigUInt64BE(BigInt(counter));
  const mac = createHmac('sha1', base32(secret)).update(message).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  const value = (mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000;
  return String(value).padStart(6, '0');
}

// A time step is accepted once per account; the server allows one step of skew, so a second
// code within the same 30 seconds uses the next step.
const lastStep = new Map();
function nextCode(secret) {
  const now = Math.floor(Date.now() / 30000);
  const counter = Math.max(now, (lastStep.get(secret) ?? -1) + 1);
  lastStep.set(secret, counter);
  return totp(secret, counter);
}

// ---- the browser -------------------------------------------------------------------------

const browser = await chromium.launch({
  executablePath: process.env.TESSERA_CHROMIUM || '/usr/bin/chromium',
  headless: true,
});

async function context(name, options = {}) {
  const ctx = await browser.newContext({ baseURL: base, viewport: DESKTOP, ...options });
  // Runs before the page's own script and outside its policy: reports violations as errors.
  await ctx.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI}`);
    });
  });
  ctx.on('page', (page) => watch(page, name));
  ctx.on('request', (request) => {
    if (request.url().includes('/api/v1/csp-report')) problems.push(`${name}: CSP report sent: ${request.postData()}`);
  });
  const page = await ctx.newPage();
  return { ctx, page };
}

function watch(page, name) {
  page.on('console', (message) => {
    if (message.type() !== 'error') return;
    const url = message.location().url || '';
    const refusal = /Failed to load resource: the server responded with a status of 4\d\d/.test(message.text());
    if (refusal && EXPECTED_REFUSALS.some((path) => url.startsWith(base + path))) return;
    problems.push(`${name}: console error on ${page.url()}: ${message.text()} (${url})`);
  });
  page.on('pageerror', (error) => problems.push(`${name}: page error on ${page.url()}: ${error.message}`));
}

async function ready(page) {
  await page.waitForSelector('body[data-ready]', { state: 'attached', ...WAIT });
}

async function axe(page, label) {
  const result = await new AxeBuilder({ page }).analyze();
  report.axe_pages += 1;
  for (const v of result.violations) {
    if (v.impact === 'serious' || v.impact === 'critical') {
      const where = v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join('; ');
      problems.push(`axe ${v.impact} on ${label}: ${v.id} (${v.help}) at ${where}`);
    }
  }
}

async function shoot(page, name) {
  for (const [width, size] of [['desktop', DESKTOP], ['phone', PHONE]]) {
    await page.setViewportSize(size);
    const file = join(input.screenshots, `${name}-${width}.png`);
    await page.screenshot({ path: file, fullPage: true });
    report.screenshots.push(file);
  }
  await page.setViewportSize(DESKTOP);
}

/** Opens `path`, waits for its script, scans it and photographs it. */
async function visit(page, path, name) {
  await page.goto(path);
  await ready(page);
  await axe(page, name);
  await shoot(page, name);
}

async function signIn(page, account, { code } = {}) {
  await page.goto('/login');
  await page.getByLabel('Email or username').fill(account.login);
  await page.getByLabel('Password').fill(account.password);
  if (account.tenant) await page.getByLabel(/^Organisation/).fill(account.tenant);
  await page.getByRole('button', { name: 'Sign in' }).click();
  if (code) {
    await page.getByRole('heading', { name: 'Two-step verification' }).waitFor(WAIT);
    await page.getByLabel('Code', { exact: true }).fill(code());
    await page.getByRole('button', { name: 'Verify' }).click();
  }
  await page.waitForURL('**/account', WAIT);
  await ready(page);
}

async function expectSignedOut(page, what) {
  await page.waitForURL(/\/login\?reason=revoked/, WAIT);
  await page.getByText('This session was ended elsewhere').waitFor(WAIT);
  step(what);
}

function fail(text) {
  throw new Error(text);
}

try {
  // 1. Sign-in page, a wrong password (with the keyboard only), then a sign-in without a
  //    second factor.
  const ann1 = await context('ann-1');
  await visit(ann1.page, '/login', 'login');
  await ann1.page.getByLabel('Email or username').focus();
  await ann1.page.keyboard.type(input.ann.login);
  await ann1.page.keyboard.press('Tab');
  await ann1.page.keyboard.type('not the password');
  await ann1.page.keyboard.press('Enter');
  await ann1.page.getByText('The login or the password is wrong.').waitFor(WAIT);
  step('a wrong password, typed and sent with the keyboard alone, is refused with a plain message');
  await signIn(ann1.page, input.ann);
  step('ann signs in without a second factor');
  const readable = await ann1.page.evaluate(() => ({
    cookies: document.cookie.split(';').map((c) => c.trim().split('=')[0]).filter(Boolean),
    storage: localStorage.length + sessionStorage.length,
  }));
  if (readable.cookies.join() !== 'csrf_token' || readable.storage !== 0) {
    fail(`page scripts can read ${JSON.stringify(readable)}; only the CSRF cookie is expected`);
  }
  step('page scripts see only the CSRF cookie, never a token');
  await visit(ann1.page, '/account', 'account');

  // 2. Two sessions of ann: the first signs the second out, then the second (signed in
  //    again) signs out every other, and the first page leaves on its own.
  const ann2 = await context('ann-2', { viewport: PHONE });
  await signIn(ann2.page, input.ann);
  await visit(ann1.page, '/account/sessions', 'sessions');
  const rows = ann1.page.locator('[data-list="sessions"] tr');
  if ((await rows.count()) !== 2) fail(`ann has ${await rows.count()} sessions listed, expected 2`);
  await ann1.page.locator('[data-list="sessions"] tr:not(:has(.badge))').getByRole('button', { name: /^Sign out the session/ }).click();
  await ann1.page.getByText('That session is signed out.').waitFor(WAIT);
  await ann1.page.waitForFunction(() => document.querySelectorAll('[data-list="sessions"] tr').length === 1, null, WAIT);
  step('ann revokes her other session from the sessions page; it leaves the list');
  await expectSignedOut(ann2.page, 'the revoked session\'s page signs out live');

  await signIn(ann2.page, input.ann);
  await ann2.page.goto('/account/sessions');
  await ready(ann2.page);
  await ann2.page.getByRole('button', { name: 'Sign out all other sessions' }).click();
  await ann2.page.getByText('1 other session signed out.').waitFor(WAIT);
  await expectSignedOut(ann1.page, 'sign out all other sessions signs the first browser out live');

  // 3. The provisioning example, followed live by an operator.
  await signIn(ann1.page, input.ann);
  await visit(ann1.page, '/live/provisioning', 'provisioning');
  const started = await (await fetch(`${input.provisioning_url}/provision`, { method: 'POST' })).json();
  await ann1.page.getByLabel('Service instance id').fill(started.service_instance_id);
  await ann1.page.getByRole('button', { name: 'Follow' }).click();
  await ann1.page.getByText('Provisioning complete.').waitFor(WAIT);
  const done = await ann1.page.locator('[data-steps] li[data-done]').count();
  if (done !== 6) fail(`the provisioning page shows ${done} of 6 steps done`);
  await shoot(ann1.page, 'provisioning-complete');
  step('the provisioning page shows the example\'s six steps live');

  // 4. The platform administrator: every page, a role, a user, its roles, a flag, the log.
  const admin = await context('admin');
  const page = admin.page;
  await signIn(page, input.admin);
  step('the administrator signs in');
  await visit(page, '/account', 'admin-account');
  await visit(page, '/account/security', 'security');
  await visit(page, '/admin/roles', 'roles');
  await page.getByLabel('Name', { exact: true }).fill('auditor');
  await page.getByLabel(/^Description/).last().fill('Reads the audit log');
  await page.locator('form[data-form="role-create"] textarea').fill('audit:read');
  await page.getByRole('button', { name: 'Create role' }).click();
  await page.locator('[data-list="roles"] tr[data-role="auditor"]').waitFor(WAIT);
  step('the administrator creates the role auditor');

  await visit(page, '/admin/users', 'users');
  const create = page.locator('form[data-form="user-create"]');
  await create.getByLabel('Email').fill('carol@example.com');
  await create.getByLabel(/^Password/).fill('carol-password-1');
  await create.getByLabel('First name').fill('Carol');
  await create.getByLabel('Last name').fill('Jones');
  await create.getByRole('button', { name: 'Create account' }).click();
  await page.locator('[data-list="users"] tr[data-user="carol@example.com"]').waitFor(WAIT);
  step('the administrator creates carol@example.com');
  await page.getByRole('button', { name: 'Manage carol@example.com' }).click();
  const panel = page.locator('[data-user-panel]');
  await panel.getByRole('heading', { name: 'carol@example.com' }).waitFor(WAIT);
  await panel.getByLabel('auditor').check();
  await panel.getByRole('button', { name: 'Save roles' }).click();
  await page.getByText('Roles of carol@example.com saved.').waitFor(WAIT);
  const carol = await (await page.request.get('/api/v1/admin/users?q=carol')).json();
  const carolRoles = (await (await page.request.get(`/api/v1/admin/users/${carol.items[0].id}`)).json()).roles;
  if (!carolRoles.includes('auditor')) fail(`carol's roles are ${JSON.stringify(carolRoles)}`);
  await axe(page, 'users-manage');
  await shoot(page, 'users-manage');
  step('the administrator gives carol the role auditor');
  await panel.getByRole('button', { name: 'Disable' }).click();
  await page.getByText('carol@example.com is disabled.').waitFor(WAIT);
  const carolBrowser = await context('carol');
  await carolBrowser.page.goto('/login');
  await carolBrowser.page.getByLabel('Email or username').fill('carol@example.com');
  await carolBrowser.page.getByLabel('Password').fill('carol-password-1');
  await carolBrowser.page.getByLabel(/^Organisation/).fill(input.admin.tenant);
  await carolBrowser.page.getByRole('button', { name: 'Sign in' }).click();
  await carolBrowser.page.getByText('This account is disabled.').waitFor(WAIT);
  step('the administrator disables carol, whose sign-in then says so');

  // Wrong passwords until the lockout answers; its message names the wait.
  const locked = carolBrowser.page;
  await locked.getByLabel('Email or username').fill(input.mallory.login);
  await locked.getByLabel(/^Organisation/).fill('');
  let lockedOut = false;
  for (let attempt = 0; attempt < 10 && !lockedOut; attempt += 1) {
    await locked.getByLabel('Password').fill(`wrong ${attempt}`);
    await locked.getByRole('button', { name: 'Sign in' }).click();
    await locked.locator('[data-form="login"] button[type="submit"]:not([disabled])').waitFor(WAIT);
    const shown = await locked.locator('[data-form="login"] [data-error]').textContent();
    lockedOut = /locked for now\. Try again in \d+ seconds?\./.test(shown);
  }
  if (!lockedOut) fail('no lockout message after ten wrong passwords');
  await shoot(locked, 'login-locked');
  step('repeated wrong passwords get the lockout message with the wait');

  await visit(page, '/admin/tenants', 'tenants');
  await visit(page, '/admin/clients', 'clients');
  await page.getByLabel('Name', { exact: true }).fill('billing-service');
  await page.locator('form[data-form="client-create"] textarea').fill('users:read');
  await page.getByRole('button', { name: 'Create', exact: true }).click();
  await page.locator('[data-client-secret]').waitFor({ state: 'visible', ...WAIT });
  if (!(await page.locator('[data-client-secret]').textContent())) fail('no client secret shown');
  await shoot(page, 'clients-secret');
  step('a service account is created and its secret shown once');

  // The flag: ann's account page shows it on, the administrator turns it off, her page
  // follows without a reload.
  await ann1.page.goto('/account');
  await ready(ann1.page);
  const annFlag = ann1.page.locator(`[data-list="my-flags"] tr[data-flag="${input.flag}"] td`).first();
  await annFlag.waitFor(WAIT);
  if ((await annFlag.textContent()) !== 'true') fail(`ann sees ${await annFlag.textContent()} before the toggle`);
  await visit(page, '/admin/flags', 'flags');
  const flagRow = page.locator(`[data-list="flags"] tr[data-flag="${input.flag}"]`);
  for (const shown of ['bool', 'false', '100% on', 'The new banner']) {
    if (!(await flagRow.textContent()).includes(shown)) fail(`the flag's row does not show ${shown}`);
  }
  await page.getByLabel(`${input.flag} on`).uncheck();
  await page.getByText(`${input.flag} is off.`).waitFor(WAIT);
  await ann1.page.waitForFunction((key) => {
    const cell = document.querySelector(`[data-list="my-flags"] tr[data-flag="${key}"] td`);
    return cell && cell.textContent === 'false';
  }, input.flag, WAIT);
  step('a flag turned off by the administrator changes on ann\'s page without a reload');
  await page.getByRole('button', { name: `Edit ${input.flag}` }).click();
  await page.getByLabel(/^Rollout/).fill('25');
  await page.getByRole('button', { name: 'Save rollout' }).click();
  await page.getByText(`Rollout of ${input.flag}: 25% on.`).waitFor(WAIT);
  await page.waitForFunction((key) => document.querySelector(`[data-list="flags"] tr[data-flag="${key}"]`).textContent.includes('25% on'), input.flag, WAIT);
  await axe(page, 'flags-edit');
  await shoot(page, 'flags-edit');
  step('the rollout slider sets a 25% rollout');

  await visit(page, '/admin/audit', 'audit');
  await page.getByText(/sealed events verify/).waitFor(WAIT);
  for (const action of ['user.created', 'user.roles_changed', 'flag.updated', 'role.created']) {
    await page.locator(`[data-list="audit"] tr[data-action="${action}"]`).first().waitFor(WAIT);
  }
  await page.getByLabel(/^Action/).fill('flag.');
  await page.getByRole('button', { name: 'Filter' }).click();
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll('[data-list="audit"] tr[data-action]')];
    return rows.length > 0 && rows.every((r) => r.dataset.action.startsWith('flag.'));
  }, null, WAIT);
  const exported = await page.request.get(await page.locator('[data-export]').getAttribute('href'));
  const lines = (await exported.text()).trim().split('\n').map((l) => JSON.parse(l));
  if (!lines.length || !lines.every((e) => e.action.startsWith('flag.'))) fail('the export does not follow the filter');
  step('the audit log shows the user, role and flag changes, filters them and exports them');

  // 5. Two-step verification: bob turns it on from the security page, signs out, and signs
  //    in with a code, then with a recovery code.
  const bob = await context('bob');
  await signIn(bob.page, input.bob);
  await bob.page.goto('/account/security');
  await ready(bob.page);
  await bob.page.getByRole('button', { name: 'Set up' }).click();
  await bob.page.getByLabel('Your password').fill(input.bob.password);
  await bob.page.getByRole('button', { name: 'Continue' }).click();
  await bob.page.locator('[data-mfa-setup-step] [data-secret]').waitFor({ state: 'visible', ...WAIT });
  const secret = await bob.page.locator('[data-mfa-setup-step] [data-secret]').textContent();
  await shoot(bob.page, 'mfa-setup');
  await bob.page.getByLabel('Code from the app').fill(nextCode(secret));
  await bob.page.getByRole('button', { name: 'Turn on' }).click();
  await bob.page.locator('[data-recovery] [data-codes] li').first().waitFor(WAIT);
  const codes = await bob.page.locator('[data-recovery] [data-codes] li').allTextContents();
  if (codes.length !== 10) fail(`${codes.length} recovery codes shown`);
  await axe(bob.page, 'mfa-recovery-codes');
  await shoot(bob.page, 'mfa-recovery-codes');
  step('bob turns on two-step verification and sees ten recovery codes once');
  await bob.page.getByRole('button', { name: 'Sign out' }).first().click();
  await bob.page.waitForURL(/reason=signed_out/, WAIT);
  await signIn(bob.page, input.bob, { code: () => nextCode(secret) });
  step('bob signs in with his password and a code');
  await bob.page.getByRole('button', { name: 'Sign out' }).first().click();
  await bob.page.waitForURL(/reason=signed_out/, WAIT);
  await bob.page.goto('/login');
  await bob.page.getByLabel('Email or username').fill(input.bob.login);
  await bob.page.getByLabel('Password').fill(input.bob.password);
  await bob.page.getByRole('button', { name: 'Sign in' }).click();
  await bob.page.getByLabel('Use a recovery code instead').check();
  await bob.page.getByLabel('Recovery code', { exact: true }).fill(codes[0]);
  await axe(bob.page, 'login-mfa-step');
  await shoot(bob.page, 'login-mfa-step');
  await bob.page.getByRole('button', { name: 'Verify' }).click();
  await bob.page.waitForURL('**/account', WAIT);
  step('bob signs in with a recovery code');

  // 6. A tenant that requires a second factor: enrollment during sign-in.
  const dora = await context('dora', { colorScheme: 'dark' });
  await dora.page.goto('/login');
  await dora.page.getByLabel('Email or username').fill(input.dora.login);
  await dora.page.getByLabel('Password').fill(input.dora.password);
  await dora.page.getByLabel(/^Organisation/).fill(input.dora.tenant);
  await dora.page.getByRole('button', { name: 'Sign in' }).click();
  await dora.page.getByRole('heading', { name: 'Set up two-step verification' }).waitFor(WAIT);
  const doraSecret = await dora.page.locator('[data-enroll] [data-secret]').textContent();
  await axe(dora.page, 'login-enrollment (dark)');
  await shoot(dora.page, 'login-enrollment-dark');
  await dora.page.getByLabel('Code from the app').fill(nextCode(doraSecret));
  await dora.page.getByRole('button', { name: 'Turn on' }).click();
  await dora.page.getByRole('heading', { name: 'Your recovery codes' }).waitFor(WAIT);
  await dora.page.getByRole('button', { name: /I stored them/ }).click();
  await signIn(dora.page, input.dora, { code: () => nextCode(doraSecret) });
  await visit(dora.page, '/account', 'account-dark');
  step('a tenant requiring a second factor enrolls dora during sign-in, then she signs in with a code');

  // 7. A page the caller may not open: refused, and not in the navigation.
  await ann1.page.goto('/admin/users');
  await ann1.page.getByText('You do not have the permission this page needs.').waitFor(WAIT);
  if (await ann1.page.locator('nav a[href="/admin/users"]').count()) fail('ann sees Users in the navigation');
  step('pages needing a permission ann lacks are refused and left out of her navigation');
} catch (error) {
  problems.push(`scenario failed: ${error.stack || error}`);
} finally {
  await browser.close();
}

console.log(JSON.stringify({ problems, report }));
