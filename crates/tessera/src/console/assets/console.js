// Tessera console: the one script of the server-rendered pages. It sends forms to the JSON API
// (cookie authentication, the CSRF token echoed in X-CSRF-Token), fills lists, and follows the
// session, the flags and the platform status live on the real-time hub. It never sees a
// credential: the access and refresh tokens live in HttpOnly cookies; the CSRF cookie it reads
// is worthless without them. An access cookie that expired while the page was open is renewed
// once, silently, through the refresh cookie, and the request made again.
'use strict';

(() => {
  const $ = (selector, root = document) => root.querySelector(selector);
  const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));
  const page = document.body.dataset.page;
  const csrfCookie = $('meta[name="tessera-csrf-cookie"]').content;

  function csrfToken() {
    for (const part of document.cookie.split(';')) {
      const [name, ...rest] = part.trim().split('=');
      if (name === csrfCookie) return rest.join('=');
    }
    return '';
  }

  /** An API refusal: the problem+json body, its status and Retry-After. */
  class Problem extends Error {
    constructor(status, body, retryAfter) {
      super((body && (body.detail || body.title)) || `request failed (${status})`);
      this.status = status;
      this.code = body && body.code;
      this.body = body || {};
      this.retryAfter = retryAfter;
    }
  }

  // Codes meaning the access token is gone or stale, as opposed to a refused password.
  const SESSION_CODES = new Set(['unauthenticated', 'invalid_token']);
  let refreshing = null;

  /** One rotation of the refresh cookie at a time, whoever asks. */
  function refresh() {
    if (!refreshing) {
      refreshing = fetch('/api/v1/auth/refresh', {
        method: 'POST',
        credentials: 'same-origin',
        headers: { 'X-CSRF-Token': csrfToken(), 'Content-Type': 'application/json' },
        body: '{}',
      }).then((r) => r.ok, () => false).finally(() => { setTimeout(() => { refreshing = null; }, 0); });
    }
    return refreshing;
  }

  async function api(method, path, body, retried = false) {
    const headers = { Accept: 'application/json' };
    if (method !== 'GET') headers['X-CSRF-Token'] = csrfToken();
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const response = await fetch(path, {
      method,
      headers,
      credentials: 'same-origin',
      // Always revalidated (the ETag makes that cheap): the pages follow live changes, and a
      // public answer's brief max-age (the status) would otherwise show what just changed.
      cache: 'no-cache',
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    let data = null;
    if (text && (response.headers.get('content-type') || '').includes('json')) data = JSON.parse(text);
    if (response.ok) return data;
    const problem = new Problem(response.status, data, Number(response.headers.get('retry-after')) || 0);
    if (response.status === 401 && page !== 'login') {
      if (problem.code === 'session_ended') signedOut('revoked');
      else if (SESSION_CODES.has(problem.code) && !retried) {
        if (await refresh()) return api(method, path, body, true);
        signedOut('expired');
      }
    }
    throw problem;
  }

  /** What a person reads for a refusal: the wait for limits and lockout, plain words otherwise. */
  function explain(problem) {
    if (!(problem instanceof Problem)) return 'Tessera could not be reached. Check the connection and try again.';
    const wait = problem.retryAfter ? ` Try again in ${problem.retryAfter} second${problem.retryAfter === 1 ? '' : 's'}.` : '';
    switch (problem.code) {
      case 'invalid_credentials': return 'The login or the password is wrong.';
      case 'account_disabled': return 'This account is disabled. Ask an administrator to enable it.';
      case 'tenant_disabled': return 'This organisation is disabled. Ask an administrator.';
      case 'login_delayed': return `Too many failed attempts: this account is locked for now.${wait}`;
      case 'too_many_attempts':
      case 'rate_limited': return `Too many attempts.${wait}`;
      case 'overloaded': return `Tessera is busy right now.${wait || ' Try again in a moment.'}`;
      case 'invalid_code': return 'That code is not right. Check the time on your device and try again.';
      case 'invalid_mfa_token': return 'This sign-in expired. Start again with your password.';
      default:
        if (problem.status === 503) return `Tessera is unavailable right now.${wait}`;
        if (problem.status === 429) return `Too many requests.${wait}`;
        return problem.message;
    }
  }

  let toastTimer = 0;
  function toast(message) {
    const box = $('[data-toast]');
    box.textContent = message;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { box.textContent = ''; }, 5000);
  }

  /** Sends `name`'s form through `handler(values, form)`, showing refusals beside it. */
  function onSubmit(name, handler) {
    for (const form of $$(`form[data-form="${name}"]`)) {
      form.addEventListener('submit', async (event) => {
        event.preventDefault();
        const error = $('[data-error]', form);
        const button = $('button[type="submit"]', form);
        if (error) error.hidden = true;
        if (button) button.disabled = true;
        try {
          const values = Object.fromEntries(new FormData(form).entries());
          await handler(values, form);
        } catch (problem) {
          if (error) {
            error.textContent = explain(problem);
            error.hidden = false;
          } else toast(explain(problem));
        } finally {
          if (button) button.disabled = false;
        }
      });
    }
  }

  /** Runs `action` on click, reporting a refusal in the toast. */
  function onClick(element, action) {
    if (!element) return;
    element.addEventListener('click', async () => {
      element.disabled = true;
      try { await action(); } catch (problem) { toast(explain(problem)); } finally { element.disabled = false; }
    });
  }

  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes)) {
      if (key === 'text') node.textContent = value;
      else if (key === 'class') node.className = value;
      else if (value === true) node.setAttribute(key, '');
      else if (value !== false && value !== undefined && value !== null) node.setAttribute(key, value);
    }
    for (const child of children) if (child !== null && child !== undefined) node.append(child);
    return node;
  }

  function when(seconds) {
    if (!seconds) return 'never';
    return new Date(Number(seconds) * 1000).toLocaleString();
  }

  function fillRows(name, items, row, empty) {
    const body = $(`[data-list="${name}"]`);
    body.replaceChildren(...items.map(row));
    if (!items.length) {
      const columns = body.closest('table').querySelectorAll('thead th').length;
      body.append(el('tr', {}, el('td', { colspan: columns, class: 'muted', text: empty })));
    }
  }

  function lines(text) {
    return String(text || '').split('\n').map((s) => s.trim()).filter(Boolean);
  }

  function device(agent) {
    if (!agent) return 'Unknown device';
    const browser = /(Edg|Firefox|Chrome|Safari)\/[\d.]+/.exec(agent);
    const system = /(Windows|Android|iPhone|Mac OS X|Linux)/.exec(agent);
    if (!browser && !system) return agent.slice(0, 60);
    return [browser && browser[1].replace('Edg', 'Edge'), system && system[1].replace('Mac OS X', 'macOS')].filter(Boolean).join(' on ');
  }

  function safeNext() {
    const next = new URLSearchParams(location.search).get('next') || '/account';
    return next.startsWith('/') && !next.startsWith('//') && !next.startsWith('/\\') ? next : '/account';
  }

  let leaving = false;
  function signedOut(reason) {
    if (leaving) return;
    leaving = true;
    const next = encodeURIComponent(location.pathname);
    location.replace(`/login?reason=${reason}&next=${next}`);
  }

  // ---- live: one stream on the real-time hub for the whole page. It always follows the
  // `flags` channel, which anyone signed in may follow and which every page uses (`flag.changed`:
  // a flag or an override changed), plus the channels of the events the page listens for. The
  // stream ends with `auth.revoked` the moment this session is revoked anywhere.

  // The channel that carries each event type a page may follow.
  const CHANNEL_OF = { 'flag.changed': 'flags', 'status.changed': 'status' };
  const listeners = new Map();
  let sessionStream = null;
  let subscribedOnce = false;
  let loaded = false;

  /** Calls `changed(data)` for each `type` event; `changed(null)` when events may have been missed. */
  function follow(type, changed) {
    if (!listeners.has(type)) listeners.set(type, []);
    listeners.get(type).push(changed);
  }

  function notify(type, data) {
    for (const changed of listeners.get(type) || []) changed(data);
  }

  function followSession() {
    const channels = new Set(['flags', ...Array.from(listeners.keys(), (type) => CHANNEL_OF[type])]);
    const query = new URLSearchParams([...channels].map((c) => ['channel', c]));
    sessionStream = new EventSource(`/api/v1/realtime/sse?${query}`);
    sessionStream.addEventListener('subscribed', () => {
      // Events may have gone by unseen: before the first subscription if the page had loaded
      // already, and between any two streams. Each listener then reloads what it shows.
      const missed = subscribedOnce || loaded;
      subscribedOnce = true;
      document.body.dataset.live = '';
      if (missed) for (const type of listeners.keys()) notify(type, null);
    });
    sessionStream.addEventListener('auth.revoked', () => {
      sessionStream.close();
      signedOut('revoked');
    });
    for (const type of listeners.keys()) {
      sessionStream.addEventListener(type, (event) => notify(type, JSON.parse(event.data)));
    }
    sessionStream.addEventListener('error', async () => {
      if (sessionStream.readyState !== EventSource.CLOSED || leaving) return;
      delete document.body.dataset.live;
      // Refused on reconnection: find out whether the session ended or only the token aged.
      try {
        await api('GET', '/api/v1/auth/sessions/current');
        setTimeout(followSession, 1000);
      } catch (problem) {
        if (problem instanceof Problem && problem.status === 401) signedOut('revoked');
        else setTimeout(followSession, 5000);
      }
    });
  }

  function followFlags(changed) {
    follow('flag.changed', changed);
  }

  window.addEventListener('pagehide', () => { if (sessionStream) sessionStream.close(); });

  // ---- sign-in ---------------------------------------------------------------------------

  function initLogin() {
    const login = $('form[data-form="login"]');
    const mfa = $('form[data-form="mfa"]');
    const enroll = $('[data-enroll]');
    const recovery = $('[data-recovery]');
    let challenge = null;
    const show = (part) => {
      for (const p of [login, mfa, enroll, recovery]) p.hidden = p !== part;
      const first = $('input:not([type="checkbox"]), button', part);
      if (first) first.focus();
    };
    const done = () => location.assign(safeNext());
    const reason = new URLSearchParams(location.search).get('reason');
    if (!reason && csrfToken()) refresh().then((ok) => { if (ok) done(); });

    onSubmit('login', async (values) => {
      const body = { login: values.login, password: values.password, delivery: 'cookie' };
      if (values.tenant.trim()) body.tenant = values.tenant.trim();
      const answer = await api('POST', '/api/v1/auth/login', body);
      if (answer && answer.mfa_required) {
        challenge = answer.mfa_token;
        show(mfa);
      } else if (answer && answer.mfa_enrollment_required) {
        challenge = answer.mfa_token;
        const setup = await api('POST', '/api/v1/auth/mfa/enroll/setup', { mfa_token: challenge });
        $('[data-qr]', enroll).src = setup.qr_svg;
        $('[data-secret]', enroll).textContent = setup.secret;
        show(enroll);
      } else done();
    });
    const recoveryBox = $('input[name="recovery"]', mfa);
    recoveryBox.addEventListener('change', () => {
      $('[data-code-label]', mfa).textContent = recoveryBox.checked ? 'Recovery code' : 'Code';
      $('input[name="code"]', mfa).inputMode = recoveryBox.checked ? 'text' : 'numeric';
    });
    onSubmit('mfa', async (values) => {
      const body = { mfa_token: challenge };
      body[recoveryBox.checked ? 'recovery_code' : 'code'] = values.code.trim();
      await api('POST', '/api/v1/auth/mfa/verify', body);
      done();
    });
    onSubmit('enroll', async (values) => {
      const answer = await api('POST', '/api/v1/auth/mfa/enroll/confirm', { mfa_token: challenge, code: values.code.trim() });
      $('[data-codes]', recovery).replaceChildren(...answer.recovery_codes.map((c) => el('li', { text: c })));
      show(recovery);
    });
    $('[data-continue]', recovery).addEventListener('click', () => {
      $('[data-codes]', recovery).replaceChildren();
      $('input[name="password"]', login).value = '';
      toast('Two-step verification is on. Sign in with your password and a code.');
      show(login);
    });
  }

  // ---- my account --------------------------------------------------------------------------

  async function initAccount() {
    for (const node of $$('[data-time]')) node.textContent = when(node.dataset.time);
    for (const badge of $$('[data-mfa-badge]')) {
      badge.classList.add(badge.dataset.mfaBadge === 'on' ? 'ok' : 'off');
    }
    const render = async () => {
      const answer = await api('POST', '/ofrep/v1/evaluate/flags', { context: {} });
      const flags = (answer.flags || []).slice().sort((a, b) => a.key.localeCompare(b.key));
      fillRows('my-flags', flags, (f) => el('tr', { 'data-flag': f.key },
        el('th', { scope: 'row' }, el('code', { text: f.key })),
        el('td', { text: JSON.stringify(f.value) }),
        el('td', { class: 'muted', text: (f.reason || '').toLowerCase() })), 'No flags yet.');
    };
    followFlags(() => render().catch((p) => toast(explain(p))));
    await render();
  }

  async function initSessions() {
    const load = async () => {
      const answer = await api('GET', '/api/v1/auth/sessions?page_size=100');
      fillRows('sessions', answer.items, (s) => el('tr', { 'data-session': s.id },
        el('th', { scope: 'row' }, device(s.user_agent), ' ', s.is_current ? el('span', { class: 'badge ok', text: 'This session' }) : null),
        el('td', { text: s.ip || 'unknown' }),
        el('td', { text: when(s.last_used_at) }),
        el('td', { text: when(s.created_at) }),
        el('td', {}, s.is_current ? null : revokeButton(s))), 'No sessions.');
    };
    const revokeButton = (s) => {
      const button = el('button', { type: 'button', class: 'ghost', text: 'Sign out', 'aria-label': `Sign out the session on ${device(s.user_agent)}, last used ${when(s.last_used_at)}` });
      onClick(button, async () => {
        await api('POST', `/api/v1/auth/sessions/${encodeURIComponent(s.id)}/revoke`);
        toast('That session is signed out.');
        await load();
      });
      return button;
    };
    onClick($('[data-revoke-others]'), async () => {
      const answer = await api('POST', '/api/v1/auth/sessions/revoke-others');
      const n = answer && typeof answer.revoked === 'number' ? answer.revoked : 0;
      toast(`${n} other session${n === 1 ? '' : 's'} signed out.`);
      await load();
    });
    await load();
  }

  function initSecurity() {
    const card = $('[data-mfa]');
    const render = (state) => {
      card.dataset.mfa = state;
      $('[data-mfa-off]', card).hidden = state !== 'off';
      $('[data-mfa-on]', card).hidden = state !== 'on';
    };
    render(card.dataset.mfa);
    const setupButton = $('[data-mfa-setup]');
    const setupStep = $('[data-mfa-setup-step]', card);
    const passwordForm = el('form', { 'data-form': 'mfa-setup' },
      el('label', {}, 'Your password', el('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true })),
      el('p', { class: 'error', role: 'alert', 'data-error': true, hidden: true }),
      el('button', { type: 'submit', text: 'Continue' }));
    setupButton.addEventListener('click', () => {
      setupButton.replaceWith(passwordForm);
      $('input', passwordForm).focus();
    });
    passwordForm.addEventListener('submit', async (event) => {
      event.preventDefault();
      const error = $('[data-error]', passwordForm);
      error.hidden = true;
      try {
        const setup = await api('POST', '/api/v1/auth/mfa/totp/setup', { password: passwordForm.elements.password.value });
        $('[data-qr]', setupStep).src = setup.qr_svg;
        $('[data-secret]', setupStep).textContent = setup.secret;
        passwordForm.hidden = true;
        setupStep.hidden = false;
        $('input', setupStep).focus();
      } catch (problem) {
        error.textContent = explain(problem);
        error.hidden = false;
      }
    });
    onSubmit('mfa-confirm', async (values) => {
      const answer = await api('POST', '/api/v1/auth/mfa/totp/confirm', { code: values.code.trim() });
      setupStep.hidden = true;
      const recovery = $('[data-recovery]', card);
      $('[data-codes]', recovery).replaceChildren(...answer.recovery_codes.map((c) => el('li', { text: c })));
      recovery.hidden = false;
      render('on');
      toast('Two-step verification is on; your other sessions were signed out.');
    });
    onSubmit('mfa-disable', async (values, form) => {
      await api('POST', '/api/v1/auth/mfa/totp/disable', { password: values.password, code: values.code.trim() });
      form.reset();
      $('[data-recovery]', card).hidden = true;
      render('off');
      location.reload();
    });
    onSubmit('password', async (values, form) => {
      await api('POST', '/api/v1/auth/password', { current_password: values.current_password, new_password: values.new_password });
      form.reset();
      toast('Password changed. Your other sessions were signed out.');
    });
  }

  // ---- administration ------------------------------------------------------------------

  function statusBadge(active) {
    return el('span', { class: active ? 'badge ok' : 'badge off', text: active ? 'active' : 'disabled' });
  }

  async function roleChecks(container, chosen, prefix) {
    const answer = await api('GET', '/api/v1/admin/roles?page_size=100');
    container.replaceChildren(...answer.items.map((r) => el('label', { class: 'check' },
      el('input', { type: 'checkbox', name: `${prefix}-role`, value: r.name, checked: chosen.includes(r.name) }), r.name)));
  }
  const checked = (form, prefix) => $$(`input[name="${prefix}-role"]:checked`, form).map((i) => i.value);

  async function initUsers() {
    const panel = $('[data-user-panel]');
    let current = null;
    let query = '';
    const load = async () => {
      const q = query ? `&q=${encodeURIComponent(query)}` : '';
      const answer = await api('GET', `/api/v1/admin/users?page_size=50${q}`);
      fillRows('users', answer.items, (u) => {
        const manage = el('button', { type: 'button', class: 'ghost', text: 'Manage', 'aria-label': `Manage ${u.email}` });
        onClick(manage, () => open(u.id));
        return el('tr', { 'data-user': u.email },
          el('th', { scope: 'row', text: u.email }),
          el('td', { text: `${u.first_name} ${u.last_name}`.trim() || '—' }),
          el('td', {}, statusBadge(u.active)),
          el('td', { text: when(u.last_login_at) }),
          el('td', {}, manage));
      }, 'Nobody matches.');
    };
    const open = async (id) => {
      current = await api('GET', `/api/v1/admin/users/${encodeURIComponent(id)}`);
      $('[data-user-title]').textContent = current.email;
      await roleChecks($('[data-role-checks]', panel), current.roles || [], 'edit');
      $('[data-user-toggle]').textContent = current.active ? 'Disable' : 'Enable';
      try {
        const sessions = await api('GET', `/api/v1/admin/users/${encodeURIComponent(id)}/sessions?page_size=100`);
        fillRows('user-sessions', sessions.items, (s) => el('tr', {},
          el('td', { text: device(s.user_agent) }), el('td', { text: s.ip || 'unknown' }), el('td', { text: when(s.last_used_at) })), 'No sessions.');
      } catch (problem) {
        fillRows('user-sessions', [], null, explain(problem));
      }
      panel.hidden = false;
      $('h2', panel).setAttribute('tabindex', '-1');
      $('h2', panel).focus();
    };
    onSubmit('user-search', async (values) => { query = values.q.trim(); await load(); });
    onSubmit('user-create', async (values, form) => {
      const body = { email: values.email, password: values.password, first_name: values.first_name, last_name: values.last_name, roles: checked(form, 'new') };
      const created = await api('POST', '/api/v1/admin/users', body);
      form.reset();
      toast(`Account ${created.email} created.`);
      await load();
    });
    onSubmit('user-roles', async (values, form) => {
      current = await api('PATCH', `/api/v1/admin/users/${encodeURIComponent(current.id)}`, { roles: checked(form, 'edit') });
      toast(`Roles of ${current.email} saved.`);
    });
    onClick($('[data-user-toggle]'), async () => {
      current = await api('PATCH', `/api/v1/admin/users/${encodeURIComponent(current.id)}`, { active: !current.active });
      toast(`${current.email} is ${current.active ? 'enabled' : 'disabled'}.`);
      await open(current.id);
      await load();
    });
    onClick($('[data-user-unlock]'), async () => {
      await api('POST', `/api/v1/admin/users/${encodeURIComponent(current.id)}/unlock`);
      toast(`${current.email} is unlocked.`);
    });
    onSubmit('user-password', async (values, form) => {
      await api('POST', `/api/v1/admin/users/${encodeURIComponent(current.id)}/password`, { new_password: values.new_password });
      form.reset();
      toast(`Password of ${current.email} reset.`);
    });
    onClick($('[data-user-revoke-all]'), async () => {
      await api('POST', `/api/v1/admin/users/${encodeURIComponent(current.id)}/sessions/revoke-all`);
      toast(`Every session of ${current.email} ended.`);
      await open(current.id);
    });
    await Promise.all([load(), roleChecks($('form[data-form="user-create"] [data-role-checks]'), ['user'], 'new')]);
  }

  async function initRoles() {
    const panel = $('[data-role-panel]');
    const form = $('form[data-form="role-edit"]');
    let current = null;
    const load = async () => {
      const answer = await api('GET', '/api/v1/admin/roles?page_size=100');
      fillRows('roles', answer.items, (r) => {
        const edit = el('button', { type: 'button', class: 'ghost', text: 'Edit', 'aria-label': `Edit ${r.name}` });
        onClick(edit, async () => {
          current = r;
          $('[data-role-title]').textContent = r.name;
          form.elements.description.value = r.description || '';
          form.elements.permissions.value = (r.permissions || []).join('\n');
          panel.hidden = false;
          form.elements.permissions.focus();
        });
        return el('tr', { 'data-role': r.name },
          el('th', { scope: 'row' }, r.name, el('div', { class: 'muted', text: r.description || '' })),
          el('td', {}, ...(r.permissions || []).map((p) => el('code', { class: 'badge', text: p })), null),
          el('td', {}, edit));
      }, 'No roles.');
    };
    onSubmit('role-edit', async (values) => {
      await api('PATCH', `/api/v1/admin/roles/${encodeURIComponent(current.name)}`, { description: values.description, permissions: lines(values.permissions) });
      toast(`Role ${current.name} saved.`);
      await load();
    });
    onClick($('[data-role-delete]'), async () => {
      await api('DELETE', `/api/v1/admin/roles/${encodeURIComponent(current.name)}`);
      panel.hidden = true;
      toast(`Role ${current.name} deleted.`);
      await load();
    });
    onSubmit('role-create', async (values, f) => {
      await api('POST', '/api/v1/admin/roles', { name: values.name.trim(), description: values.description, permissions: lines(values.permissions) });
      f.reset();
      toast('Role created.');
      await load();
    });
    await load();
  }

  async function initTenants() {
    const load = async () => {
      const answer = await api('GET', '/api/v1/admin/tenants?page_size=100');
      fillRows('tenants', answer.items, (t) => {
        const toggle = el('button', { type: 'button', class: 'ghost', text: t.active ? 'Disable' : 'Enable', 'aria-label': `${t.active ? 'Disable' : 'Enable'} ${t.name}` });
        onClick(toggle, async () => {
          await api('PATCH', `/api/v1/admin/tenants/${encodeURIComponent(t.id)}`, { active: !t.active });
          await load();
        });
        return el('tr', {},
          el('th', { scope: 'row', text: t.name }), el('td', {}, el('code', { text: t.slug })),
          el('td', {}, el('code', { text: t.id })), el('td', {}, statusBadge(t.active)), el('td', {}, toggle));
      }, 'No tenants.');
    };
    onSubmit('tenant-create', async (values, form) => {
      await api('POST', '/api/v1/admin/tenants', { name: values.name, slug: values.slug.trim() });
      form.reset();
      toast('Tenant created.');
      await load();
    });
    await load();
  }

  async function initClients() {
    const box = $('[data-secret-box]');
    const reveal = (answer) => {
      $('[data-client-id]', box).textContent = answer.id;
      $('[data-client-secret]', box).textContent = answer.client_secret;
      box.hidden = false;
      box.setAttribute('tabindex', '-1');
      box.focus();
    };
    const load = async () => {
      const answer = await api('GET', '/api/v1/admin/clients?page_size=100');
      fillRows('clients', answer.items, (c) => {
        const rotate = el('button', { type: 'button', class: 'ghost', text: 'New secret', 'aria-label': `New secret for ${c.name}` });
        onClick(rotate, async () => reveal(await api('POST', `/api/v1/admin/clients/${encodeURIComponent(c.id)}/secret`)));
        const toggle = el('button', { type: 'button', class: 'ghost', text: c.active ? 'Disable' : 'Enable', 'aria-label': `${c.active ? 'Disable' : 'Enable'} ${c.name}` });
        onClick(toggle, async () => {
          await api('PATCH', `/api/v1/admin/clients/${encodeURIComponent(c.id)}`, { active: !c.active });
          await load();
        });
        return el('tr', {},
          el('th', { scope: 'row', text: c.name }), el('td', {}, el('code', { text: c.id })),
          el('td', {}, ...(c.scopes || []).map((s) => el('code', { class: 'badge', text: s }))),
          el('td', {}, statusBadge(c.active)), el('td', {}, el('div', { class: 'actions' }, rotate, toggle)));
      }, 'No service accounts.');
    };
    onSubmit('client-create', async (values, form) => {
      const answer = await api('POST', '/api/v1/admin/clients', { name: values.name, scopes: lines(values.scopes) });
      form.reset();
      reveal(answer);
      await load();
    });
    await load();
  }

  function rolloutPercent(spec) {
    const on = (spec.rollout || []).find((s) => s.variant === 'on');
    return on ? on.percent : (spec.rollout && spec.rollout.length ? 0 : null);
  }

  async function initFlags() {
    const panel = $('[data-flag-panel]');
    let current = null;
    let flags = [];
    const load = async () => {
      const answer = await api('GET', '/api/v1/admin/flags?page_size=100');
      flags = answer.items;
      fillRows('flags', flags, (f) => {
        const spec = f;
        const toggle = el('input', { type: 'checkbox', checked: spec.enabled !== false, 'aria-label': `${f.key} on`, 'data-toggle': f.key });
        toggle.addEventListener('change', async () => {
          toggle.disabled = true;
          try {
            await api('PATCH', `/api/v1/admin/flags/${encodeURIComponent(f.key)}`, { enabled: toggle.checked });
            toast(`${f.key} is ${toggle.checked ? 'on' : 'off'}.`);
          } catch (problem) {
            toggle.checked = !toggle.checked;
            toast(explain(problem));
          } finally { toggle.disabled = false; }
        });
        const edit = el('button', { type: 'button', class: 'ghost', text: 'Edit', 'aria-label': `Edit ${f.key}` });
        onClick(edit, async () => openFlag(f.key));
        const percent = rolloutPercent(spec);
        return el('tr', { 'data-flag': f.key },
          el('th', { scope: 'row' }, el('code', { text: f.key }), el('div', { class: 'muted', text: spec.description || '' })),
          el('td', { text: spec.type }),
          el('td', {}, toggle),
          el('td', {}, el('code', { text: JSON.stringify(spec.default) })),
          el('td', { text: percent === null ? 'everyone' : `${percent}% on` }),
          el('td', {}, edit));
      }, 'No flags yet.');
    };
    const openFlag = (key) => {
      current = flags.find((f) => f.key === key);
      if (!current) return;
      const spec = current;
      $('[data-flag-title]').textContent = key;
      const rollout = $('form[data-form="flag-rollout"]');
      rollout.hidden = spec.type !== 'bool';
      const percent = rolloutPercent(spec);
      rollout.elements.percent.value = percent === null ? 100 : percent;
      $('[data-rollout-out]').textContent = `${rollout.elements.percent.value}%`;
      $('form[data-form="flag-rules"]').elements.rules.value = JSON.stringify(spec.rules || [], null, 2);
      $('form[data-form="flag-override"]').elements.value.value = current.tenant_override === undefined || current.tenant_override === null ? '' : JSON.stringify(current.tenant_override);
      panel.hidden = false;
      $('h2', panel).setAttribute('tabindex', '-1');
      $('h2', panel).focus();
    };
    const range = $('form[data-form="flag-rollout"] input[name="percent"]');
    range.addEventListener('input', () => { $('[data-rollout-out]').textContent = `${range.value}%`; });
    onSubmit('flag-rollout', async (values) => {
      const p = Number(values.percent);
      const rollout = p >= 100 ? [] : [{ variant: 'on', percent: p }, { variant: 'off', percent: 100 - p }];
      await api('PATCH', `/api/v1/admin/flags/${encodeURIComponent(current.key)}`, { rollout });
      toast(`Rollout of ${current.key}: ${p}% on.`);
      await load();
    });
    onSubmit('flag-rules', async (values) => {
      let rules;
      try { rules = JSON.parse(values.rules || '[]'); } catch (e) { throw new Problem(422, { detail: 'The rules are not valid JSON.' }, 0); }
      await api('PATCH', `/api/v1/admin/flags/${encodeURIComponent(current.key)}`, { rules });
      toast(`Rules of ${current.key} saved.`);
      await load();
    });
    onSubmit('flag-override', async (values) => {
      let value;
      try { value = JSON.parse(values.value); } catch (e) { throw new Problem(422, { detail: 'The override is not valid JSON.' }, 0); }
      await api('PUT', `/api/v1/admin/flags/${encodeURIComponent(current.key)}/tenants/${encodeURIComponent(values.tenant_id.trim())}`, { value });
      toast(`Override of ${current.key} set.`);
      await load();
    });
    onClick($('[data-flag-clear-override]'), async () => {
      const tenant = $('form[data-form="flag-override"]').elements.tenant_id.value.trim();
      await api('DELETE', `/api/v1/admin/flags/${encodeURIComponent(current.key)}/tenants/${encodeURIComponent(tenant)}`);
      toast(`Override of ${current.key} cleared.`);
      await load();
    });
    onSubmit('flag-create', async (values, form) => {
      let value;
      try { value = JSON.parse(values.default); } catch (e) { throw new Problem(422, { detail: 'The default is not valid JSON.' }, 0); }
      await api('POST', '/api/v1/admin/flags', { key: values.key.trim(), type: values.type, default: value, description: values.description });
      form.reset();
      toast('Flag created.');
      await load();
    });
    followFlags(() => load().catch((p) => toast(explain(p))));
    await load();
  }

  async function initAudit() {
    const form = $('form[data-form="audit-filter"]');
    const more = $('[data-more]');
    let query = '';
    let next = null;
    const filters = () => {
      const params = new URLSearchParams();
      const v = Object.fromEntries(new FormData(form).entries());
      for (const name of ['action', 'actor', 'outcome']) if (v[name]) params.set(name, v[name].trim());
      if (v.from) params.set('from', String(Date.parse(`${v.from}T00:00:00`) / 1000));
      if (v.to) params.set('to', String(Date.parse(`${v.to}T00:00:00`) / 1000 + 86400));
      return params.toString();
    };
    const row = (e) => el('tr', { 'data-action': e.action },
      el('td', { text: new Date(e.occurred_at).toLocaleString() }),
      el('th', { scope: 'row' }, el('code', { class: 'nowrap', text: e.action })),
      el('td', {}, el('code', { text: e.actor ? `${e.actor.type} ${e.actor.id || ''}`.trim() : '—' })),
      el('td', {}, el('code', { text: e.target ? `${e.target.type} ${e.target.id || ''}`.trim() : '—' })),
      el('td', {}, el('span', { class: e.outcome === 'success' ? 'badge ok' : 'badge off', text: e.outcome })),
      el('td', { class: 'hide-narrow', text: e.ip || '' }));
    const load = async (append) => {
      const after = append && next ? `&after=${encodeURIComponent(next)}` : '';
      const answer = await api('GET', `/api/v1/audit?page_size=50${query ? `&${query}` : ''}${after}`);
      if (append) $('[data-list="audit"]').append(...answer.items.map(row));
      else fillRows('audit', answer.items, row, 'No events match.');
      next = answer.next_cursor || null;
      more.hidden = !next;
    };
    onSubmit('audit-filter', async () => {
      query = filters();
      $('[data-export]').href = `/api/v1/audit/export${query ? `?${query}` : ''}`;
      await load(false);
    });
    onClick(more, async () => load(true));
    const chain = $('[data-chain-status]');
    api('GET', '/api/v1/audit/chain').then((v) => {
      chain.classList.remove('muted');
      chain.replaceChildren(v.intact
        ? el('span', {}, el('span', { class: 'badge ok', text: 'intact' }), ` ${v.verified} sealed events verify (positions ${v.from_seq}–${v.to_seq}); ${v.unsealed} not sealed yet.`)
        : el('span', {}, el('span', { class: 'badge off', text: 'broken' }), ` at position ${v.broken_at}: ${v.reason}`));
    }, (problem) => {
      if (problem instanceof Problem && problem.status === 403) $('[data-chain]').hidden = true;
      else chain.textContent = explain(problem);
    });
    await load(false);
  }

  function initProvisioning() {
    const steps = $$('[data-steps] li');
    const progress = $('[data-progress]');
    const status = $('[data-progress-status]');
    let stream = null;
    onSubmit('follow', async (values) => {
      if (stream) stream.close();
      for (const s of steps) delete s.dataset.done;
      progress.value = 0;
      progress.textContent = `0 of ${steps.length}`;
      const channel = `tenant:${values.tenant_id.trim()}:service-lifecycle:${values.instance_id.trim()}`;
      status.textContent = 'Connecting…';
      // From the channel's start: a page opened mid-way still shows the steps already done.
      stream = new EventSource(`/api/v1/realtime/sse?since=0&channel=${encodeURIComponent(channel)}`);
      stream.addEventListener('subscribed', () => { status.textContent = 'Following: waiting for the next step.'; });
      stream.addEventListener('service.provisioning.progress', (event) => {
        const data = JSON.parse(event.data).data || {};
        const step = Number(data.step) || 0;
        steps.forEach((s, i) => { if (i < step) s.dataset.done = ''; });
        progress.value = step;
        progress.textContent = `${step} of ${steps.length}`;
        status.textContent = `Step ${step} of ${data.total_steps || steps.length}: ${data.message || data.status || ''}`;
        if (data.status === 'completed' || step >= steps.length) {
          status.textContent = 'Provisioning complete.';
          stream.close();
        }
      });
      stream.addEventListener('error', () => {
        if (stream.readyState === EventSource.CLOSED) status.textContent = 'This channel could not be followed: you may lack events:subscribe for it.';
      });
    });
  }

  // ---- the platform status ----------------------------------------------------------------

  // Each status in words, and what the page says when it is the overall one. A status is
  // never told by its colour alone: the badge carries the word and its own symbol.
  const STATES = {
    operational: ['Operational', 'Every service is working normally.'],
    maintenance: ['Maintenance', 'Planned maintenance is under way.'],
    degraded: ['Degraded', 'Some services are slower or failing at times.'],
    partial_outage: ['Partial outage', 'Some services are unavailable for some people.'],
    major_outage: ['Major outage', 'Some services are unavailable.'],
  };

  /** `node` as the badge of `status`: its word, and a class for its colour and symbol. */
  function showState(node, status) {
    node.className = STATES[status] ? `state ${status}` : 'state';
    node.textContent = STATES[status] ? STATES[status][0] : status;
    return node;
  }

  const stateBadge = (status) => showState(el('span'), status);
  const stateWord = (status) => (STATES[status] ? STATES[status][0].toLowerCase() : status);

  const STATUS_PAGE_SIZE = 10;

  async function initStatus() {
    const pager = { page: 1, pages: 1 };
    let endTimer = 0;
    let posted = '';
    const newer = $('[data-newer]');
    const older = $('[data-older]');
    const ends = (t) => (t ? el('p', { class: 'muted', text: `Expected to end ${when(t)}.` }) : null);
    const eventItem = (e) => el('li', { 'data-event': e.id, 'data-service': e.service },
      el('div', { class: 'timeline-head' }, stateBadge(e.status), el('code', { class: 'nowrap', text: e.service }),
        el('time', { class: 'muted', datetime: new Date(e.created_at * 1000).toISOString(), text: when(e.created_at) })),
      el('p', { text: e.message }), ends(e.ends_at));
    const serviceItem = (s) => el('li', { 'data-service': s.service, 'data-status': s.status },
      el('div', { class: 'timeline-head' }, el('h3', { class: 'service' }, el('code', { text: s.service })), stateBadge(s.status),
        el('span', { class: 'muted' }, 'since ', el('time', { datetime: new Date(s.latest.created_at * 1000).toISOString(), text: when(s.latest.created_at) }))),
      el('p', { text: s.latest.message }), s.status === s.latest.status ? ends(s.latest.ends_at) : null);
    const list = (name, items, item, empty) => $(`[data-list="${name}"]`)
      .replaceChildren(...(items.length ? items.map(item) : [el('li', { class: 'muted', text: empty })]));
    const render = (answer) => {
      const banner = $('[data-overall]');
      banner.dataset.state = answer.overall;
      showState($('[data-overall-state]'), answer.overall);
      $('[data-overall-text]').textContent = (STATES[answer.overall] || ['', ''])[1];
      list('services', answer.services, serviceItem, 'No service has reported yet: everything is operational.');
      list('status-events', answer.items, eventItem, 'No events yet.');
      const known = $('[data-known-services]');
      if (known) known.replaceChildren(...answer.services.map((s) => el('option', { value: s.service })));
      pager.pages = Math.max(1, answer.pages || 1);
      $('[data-page-of]').textContent = `Page ${pager.page} of ${pager.pages}`;
      newer.disabled = pager.page <= 1;
      older.disabled = pager.page >= pager.pages;
      // A service whose announced end passes turns operational without a new event.
      clearTimeout(endTimer);
      const now = Date.now() / 1000;
      const ends = answer.services.map((s) => s.latest.ends_at).filter((t) => t && t > now);
      if (ends.length) endTimer = setTimeout(() => load().catch((p) => toast(explain(p))), (Math.min(...ends) - now) * 1000 + 1000);
    };
    const load = async () => {
      const answer = await api('GET', `/api/v1/status?page=${pager.page}&page_size=${STATUS_PAGE_SIZE}`);
      if (pager.page > 1 && !answer.items.length && answer.total > 0) {
        pager.page = Math.max(1, answer.pages);
        return load();
      }
      render(answer);
    };
    const turn = (by) => async () => {
      pager.page = Math.min(Math.max(1, pager.page + by), pager.pages);
      await load();
    };
    onClick(newer, turn(-1));
    onClick(older, turn(1));
    follow('status.changed', (envelope) => {
      load().catch((p) => toast(explain(p)));
      const event = envelope && envelope.data && envelope.data.event;
      if (event && event.id !== posted) toast(`Status update: ${event.service} is ${stateWord(event.status)}.`);
    });
    onSubmit('status-post', async (values, form) => {
      const body = { service: values.service.trim(), status: values.status, message: values.message.trim() };
      if (values.ends_at) {
        body.ends_at = Math.floor(Date.parse(values.ends_at) / 1000);
        if (!(body.ends_at > Date.now() / 1000)) throw new Problem(422, { detail: 'The expected end must be in the future.' }, 0);
      }
      const event = await api('POST', '/api/v1/status/events', body);
      posted = event.id;
      form.reset();
      toast(`Posted: ${event.service} is ${stateWord(event.status)}.`);
      pager.page = 1;
      await load();
    });
    await load();
  }

  const pages = {
    account: initAccount,
    sessions: initSessions,
    security: initSecurity,
    users: initUsers,
    roles: initRoles,
    tenants: initTenants,
    clients: initClients,
    flags: initFlags,
    audit: initAudit,
    provisioning: initProvisioning,
    status: initStatus,
  };

  // A table wider than a phone scrolls inside its wrapper: keyboard users reach it with Tab
  // and scroll it with the arrow keys, and screen readers name it after its section.
  for (const wrap of $$('.table-wrap')) {
    const section = wrap.closest('section[aria-labelledby]');
    wrap.tabIndex = 0;
    wrap.setAttribute('role', 'region');
    if (section) wrap.setAttribute('aria-labelledby', section.getAttribute('aria-labelledby'));
  }

  if (page === 'login') {
    initLogin();
    document.body.dataset.ready = '';
    return;
  }
  for (const button of $$('[data-logout]')) {
    onClick(button, async () => {
      leaving = true;
      if (sessionStream) sessionStream.close();
      try { await api('POST', '/api/v1/auth/logout'); } finally { location.replace('/login?reason=signed_out'); }
    });
  }
  // The page's script registers what it follows before its first await; the stream then
  // opens for exactly those channels.
  const init = pages[page];
  const started = new Promise((resolve) => { resolve(init ? init() : undefined); });
  followSession();
  started.then(() => {
    loaded = true;
    document.body.dataset.ready = '';
  }, (problem) => {
    loaded = true;
    document.body.dataset.ready = '';
    if (!leaving) toast(explain(problem));
  });
})();
