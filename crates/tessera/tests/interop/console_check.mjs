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

// Chromium logs every 4xx and 5xx answer of a fetch or EventSource as a console error. These
// are the ones a scenario causes on purpose: a wrong password, a revoked session's streams and
// checks, a page the caller lacks the permission for. The lockout and disabled-account
// scenarios provoke 403 and 429 sign-in refusals: covered by '/api/v1/auth/login'.
const EXPECTED_REFUSALS = [
  '/api/v1/auth/login',
  '/api/v1/auth/refresh',
  '/api/v1/auth/sessions/current',
  '/api/v1/realtime/sse',
  '/admin/users',
];

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

/**
 * A browser context of its own cookies. `refusals` adds answers its scenario provokes on purpose
 * (`{ path, status }`), beyond the 4xx of EXPECTED_REFUSALS.
 */
async function context(name, { refusals = [], ...options } = {}) {
  const ctx = await browser.newContext({ baseURL: base, viewport: DESKTOP, ...options });
  // Runs before the page's own script and outside its policy: reports violations as errors.
  await ctx.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI}`);
    });
  });
  ctx.on('page', (page) => watch(page, name, refusals));
  ctx.on('request', (request) => {
    if (request.url().includes('/api/v1/csp-report')) problems.push(`${name}: CSP report sent: ${request.postData()}`);
  });
  const page = await ctx.newPage();
  return { ctx, page };
}

function expected(url, status, refusals) {
  const path = url ? new URL(url).pathname : '';
  if (status >= 400 && status < 500 && EXPECTED_REFUSALS.some((p) => path.startsWith(p))) return true;
  return refusals.some((r) => r.status === status && path === r.path);
}

function watch(page, name, refusals) {
  page.on('console', (message) => {
    if (message.type() !== 'error') return;
    const url = message.location().url || '';
    const refusal = /Failed to load resource: the server responded with a status of (\d{3})/.exec(message.text());
    if (refusal && expected(url, Number(refusal[1]), refusals)) return;
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

/** Waits until the page's live stream has subscribed (events from then on reach it). */
async function live(page) {
  await page.waitForSelector('body[data-live]', { state: 'attached', ...WAIT });
}

async function expectSignedOut(page, what) {
  await page.waitForURL(/\/login\?reason=revoked/, WAIT);
  await page.getByText('This session was ended elsewhere').waitFor(WAIT);
  step(what);
}

function fail(text) {
  throw new Error(text);
}

const pause = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

/**
 * Takes every place of `url`'s hashing pool with sign-ins that hash for seconds, and returns
 * them once a further one is shed (`503 overloaded`): from then on the pool is full. A sign-in
 * still unanswered after half a second holds a place; one shed answers at once.
 */
async function fillHashing(url, places) {
  const signIn = (name) => fetch(`${url}/api/v1/auth/login`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ login: `${name}@example.com`, password: 'nobody has this password' }),
  });
  const held = [];
  for (let n = 0; n < places + 10; n += 1) {
    const answer = signIn(`flood-${n}-${Date.now()}`);
    const quick = await Promise.race([answer, pause(500).then(() => null)]);
    if (quick && quick.status === 503 && (await quick.json()).code === 'overloaded') return held;
    held.push(answer);
  }
  return fail('the busy server never shed a sign-in');
}

try {
  // 0. Two pages of a server whose access tokens live input.access_ttl_secs, signed in now
  //    and used again at the end, past that lifetime (section 9).
  const renewal = await context('renewal', {
    baseURL: input.short_url,
    // The first action after expiry finds the access cookie gone, then renews it.
    refusals: [{ path: '/api/v1/status/events', status: 401 }],
  });
  const renewalNav = await context('renewal-navigation', { baseURL: input.short_url });
  await signIn(renewal.page, input.admin);
  await signIn(renewalNav.page, input.admin);
  const signedInAt = Date.now();
  await renewal.page.goto('/status');
  await ready(renewal.page);
  await live(renewal.page);
  step('two pages sign in to a server whose access tokens are short-lived');

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
  const admin = await context('admin', {
    // The rules editor's scenario sends a rule the server refuses.
    refusals: [{ path: `/api/v1/admin/flags/${input.flag}`, status: 422 }],
  });
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

  // Rules and a tenant override, each followed on ann's page without a reload.
  const annFlagRow = `[data-list="my-flags"] tr[data-flag="${input.flag}"]`;
  const annSees = (value, reason) => ann1.page.waitForFunction(([row, v, r]) => {
    const cells = document.querySelectorAll(`${row} td`);
    return cells.length === 2 && cells[0].textContent === v && cells[1].textContent === r;
  }, [annFlagRow, value, reason], WAIT);
  await page.getByLabel(`${input.flag} on`).check();
  await page.getByText(`${input.flag} is on.`).waitFor(WAIT);
  const rulesForm = page.locator('form[data-form="flag-rules"]');
  const rulesBox = rulesForm.getByLabel(/^Targeting rules/);
  await rulesBox.fill('[{"when": [');
  await rulesForm.getByRole('button', { name: 'Save rules' }).click();
  await rulesForm.getByText('The rules are not valid JSON.').waitFor(WAIT);
  await rulesBox.fill(JSON.stringify([{ when: [{ attribute: 'email', op: 'is', value: input.ann.login }], variant: 'on' }]));
  await rulesForm.getByRole('button', { name: 'Save rules' }).click();
  await rulesForm.locator('[data-error]:not([hidden])').waitFor(WAIT);
  step('the rules editor refuses text that is not JSON, and shows the server\'s refusal of an unknown operator');
  await rulesBox.fill(JSON.stringify([{ when: [{ attribute: 'email', op: 'eq', value: input.ann.login }], variant: 'on' }], null, 2));
  await rulesForm.getByRole('button', { name: 'Save rules' }).click();
  await page.getByText(`Rules of ${input.flag} saved.`).waitFor(WAIT);
  await annSees('true', 'targeting_match');
  const stored = await (await page.request.get(`/api/v1/admin/flags/${input.flag}`)).json();
  if (JSON.stringify(stored.rules.map((r) => r.when)) !== JSON.stringify([[{ attribute: 'email', op: 'eq', value: input.ann.login }]])) {
    fail(`the stored rules are ${JSON.stringify(stored.rules)}`);
  }
  step('a rule targeting ann, saved in the editor, turns the flag on for her live');
  const override = page.locator('form[data-form="flag-override"]');
  await override.getByLabel('Tenant id').fill(input.default_tenant_id);
  await override.getByLabel(/^Override value/).fill('false');
  await override.getByRole('button', { name: 'Set override' }).click();
  await page.getByText(`Override of ${input.flag} set.`).waitFor(WAIT);
  await annSees('false', 'targeting_match');
  await axe(page, 'flags-override');
  await override.getByRole('button', { name: 'Clear override' }).click();
  await page.getByText(`Override of ${input.flag} cleared.`).waitFor(WAIT);
  await annSees('true', 'targeting_match');
  step('an override for ann\'s tenant beats the rule on her page, and clearing it restores the rule');

  // The platform status: ann watches; the administrator pages through the older events and
  // posts one, which ann's page shows without a reload. Ann may not post.
  await ann1.page.goto('/status');
  await ready(ann1.page);
  await live(ann1.page);
  if (await ann1.page.locator('form[data-form="status-post"]').count()) fail('ann, who lacks status:write, is offered the form to post an event');
  await ann1.page.evaluate(() => { window.keptOpen = true; });
  await page.goto('/status');
  await ready(page);
  await live(page);
  const overall = (p) => p.locator('[data-overall-state]').textContent();
  if ((await overall(page)) !== 'Maintenance') fail(`the overall status reads ${await overall(page)}, expected Maintenance`);
  await page.getByText('Page 1 of 2').waitFor(WAIT);
  await page.getByRole('button', { name: 'Older' }).click();
  await page.getByText('Page 2 of 2').waitFor(WAIT);
  if ((await page.locator('[data-list="status-events"] li[data-event]').count()) !== 1) fail('the second page does not hold the eleventh event alone');
  step('the status page shows the overall status and pages through the recent events');
  const post = page.locator('form[data-form="status-post"]');
  await post.getByLabel(/^Service/).fill('api');
  await post.getByLabel('Status').selectOption({ label: 'Degraded' });
  await post.getByLabel('Message').fill('Sign-ins in eu-1 are slow; we are on it.');
  await post.getByRole('button', { name: 'Post event' }).click();
  await page.getByText('Posted: api is degraded.').waitFor(WAIT);
  const apiRow = '[data-list="services"] li[data-service="api"][data-status="degraded"]';
  await page.locator(apiRow).waitFor(WAIT);
  await page.getByText('Page 1 of 2').waitFor(WAIT);
  step('the administrator posts an event; it heads the list');
  await ann1.page.locator(apiRow).waitFor(WAIT);
  await ann1.page.getByText('Status update: api is degraded.').waitFor(WAIT);
  if ((await overall(ann1.page)) !== 'Degraded') fail(`ann's overall status reads ${await overall(ann1.page)}`);
  if (!(await ann1.page.evaluate(() => window.keptOpen === true))) fail('ann\'s status page was reloaded');
  if ((await ann1.page.locator('[data-list="status-events"] li[data-event]').first().getAttribute('data-service')) !== 'api') fail('ann\'s recent events do not start with the new one');
  step('ann\'s open status page shows the new event live, without a reload');
  await axe(page, 'status');
  await shoot(page, 'status');
  await axe(ann1.page, 'status (reader)');
  await shoot(ann1.page, 'status-reader');

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

  // 8. A server whose password hashing is full sheds a sign-in with 503 `overloaded`; the
  //    page says so and names the wait. The pool is verified full before each attempt, and
  //    an attempt that slipped through as the pool emptied is made again.
  const busy = await context('busy', {
    baseURL: input.busy_url,
    refusals: [{ path: '/api/v1/auth/login', status: 503 }],
  });
  await busy.page.goto('/login');
  await ready(busy.page);
  const busyError = busy.page.locator('[data-form="login"] [data-error]');
  let shed = false;
  const floods = [];
  for (let attempt = 0; attempt < 3 && !shed; attempt += 1) {
    floods.push(...(await fillHashing(input.busy_url, input.hashing_places)));
    await busy.page.getByLabel('Email or username').fill(input.ann.login);
    await busy.page.getByLabel('Password').fill(input.ann.password);
    await busy.page.getByRole('button', { name: 'Sign in' }).click();
    await busyError.waitFor({ state: 'visible', ...WAIT });
    shed = (await busyError.textContent()) === 'Tessera is busy right now. Try again in 1 second.';
  }
  if (!shed) fail(`an overloaded sign-in reads: ${await busyError.textContent()}`);
  await axe(busy.page, 'login-overloaded');
  await shoot(busy.page, 'login-overloaded');
  await Promise.allSettled(floods);
  step('a sign-in shed by a full hashing pool says Tessera is busy and when to try again');

  // 9. Past the access token's lifetime, the pages opened in section 0 renew it themselves:
  //    an action on the open page succeeds, and so does following a link.
  const expiry = input.access_ttl_secs * 1000 + 2000 - (Date.now() - signedInAt);
  if (expiry > 0) await pause(expiry);
  const renewed = renewal.page.waitForResponse((r) => r.url().endsWith('/api/v1/auth/refresh') && r.status() === 200, WAIT);
  const form = renewal.page.locator('form[data-form="status-post"]');
  await form.getByLabel(/^Service/).fill('renewal');
  await form.getByLabel('Status').selectOption('maintenance');
  await form.getByLabel('Message').fill('Posted after the access token expired.');
  await form.getByRole('button', { name: 'Post event' }).click();
  await renewed;
  await renewal.page.getByText('Posted: renewal is maintenance.').waitFor(WAIT);
  await renewal.page.locator('[data-list="services"] li[data-service="renewal"]').waitFor(WAIT);
  if (new URL(renewal.page.url()).pathname !== '/status') fail(`the renewed page moved to ${renewal.page.url()}`);
  step('an action on a page open past the access token\'s lifetime renews the cookie and succeeds');
  await renewalNav.page.getByRole('link', { name: 'Sessions' }).click();
  // Through the sign-in page, which renews the cookie and goes on without asking anything.
  await renewalNav.page.waitForURL((url) => url.pathname === '/account/sessions', WAIT);
  await ready(renewalNav.page);
  await renewalNav.page.locator('[data-list="sessions"] tr .badge').waitFor(WAIT);
  step('a link followed past the access token\'s lifetime lands on its page without a sign-in');
} catch (error) {
  problems.push(`scenario failed: ${error.stack || error}`);
} finally {
  await browser.close();
}

console.log(JSON.stringify({ problems, report }));
