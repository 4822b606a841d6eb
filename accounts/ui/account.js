// The account pages: one script for /account/{signup,verify,login} and /account. It talks to /v1/auth/* and
// /v1/agents and /v1/eval/runs with the session cookie (HttpOnly: this script never sees it) and sends the CSRF token on changes.
'use strict';
(function () {
  const $ = (id) => document.getElementById(id);
  const show = (id, on = true) => { $(id).hidden = !on; };
  // The suite the account page offers to run an agent over (one of the shipped suites).
  const SUITE = 'healthcare-v1';
  let csrfToken = '';
  let me = null;

  function setError(msg) { $('error').textContent = msg || ''; }
  function done(state) { document.body.dataset.state = state; }

  async function csrf() {
    if (csrfToken) return csrfToken;
    const r = await fetch('/v1/auth/csrf', { credentials: 'same-origin' });
    csrfToken = (await r.json()).token;
    return csrfToken;
  }

  /** A JSON call; throws an Error carrying the API's code and field on a 4xx/5xx. */
  async function api(method, url, body) {
    const headers = { accept: 'application/json' };
    if (method !== 'GET') headers['x-csrf-token'] = await csrf();
    if (body !== undefined) headers['content-type'] = 'application/json';
    const r = await fetch(url, { method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body) });
    if (r.status === 204) return null;
    const data = await r.json().catch(() => ({}));
    if (!r.ok) {
      const e = new Error((data.error && data.error.message) || `HTTP ${r.status}`);
      e.code = data.error && data.error.code;
      e.status = r.status;
      throw e;
    }
    return data;
  }

  function onSubmit(id, fn) {
    $(id).addEventListener('submit', (ev) => {
      ev.preventDefault();
      setError('');
      fn().catch((e) => { setError(e.message); done('error'); });
    });
  }

  // ---------------------------------------------------------------- signup, verify, sign-in

  function signupPage() {
    show('signup');
    onSubmit('signup-form', async () => {
      await api('POST', '/v1/auth/signup', { email: $('signup-email').value, password: $('signup-password').value, tenant_id: $('signup-tenant').value });
      show('signup-form', false);
      show('signup-done');
      done('signed-up');
    });
    done('ready');
  }

  async function verifyPage() {
    show('verify');
    const token = new URLSearchParams(location.hash.slice(1)).get('token') || '';
    history.replaceState(null, '', location.pathname); // the token leaves the address bar
    try {
      await api('POST', '/v1/auth/verify', { token });
      $('verify-status').textContent = 'Your email is verified. You can sign in now.';
      done('verified');
    } catch (e) {
      $('verify-status').textContent = e.message;
      done('error');
    }
  }

  function loginPage() {
    show('login');
    if (document.body.dataset.sso === '1') show('sso');
    let challenge = new URLSearchParams(location.hash.slice(1)).get('challenge') || '';
    const askSecondFactor = () => {
      show('login-form', false);
      show('second-factor-form');
      $('second-factor-code').focus();
      done('second-factor');
    };
    if (challenge) {
      history.replaceState(null, '', location.pathname);
      askSecondFactor();
    }
    onSubmit('login-form', async () => {
      const r = await api('POST', '/v1/auth/login', { email: $('login-email').value, password: $('login-password').value });
      if (r.status === 'second_factor') {
        challenge = r.challenge;
        askSecondFactor();
      } else location.assign('/account');
    });
    onSubmit('second-factor-form', async () => {
      await api('POST', '/v1/auth/login/second-factor', { challenge, code: $('second-factor-code').value.trim() });
      location.assign('/account');
    });
    if (!challenge) done('ready');
  }

  // ---------------------------------------------------------------- the account

  function totpView() {
    $('totp-status').textContent = me.totp_enabled ? 'On: signing in asks for a code from your authenticator app.' : 'Off.';
    show('totp-start', !me.totp_enabled);
  }

  async function keysView() {
    const { keys } = await api('GET', '/v1/auth/keys');
    const body = $('keys-body');
    body.replaceChildren();
    for (const k of keys) {
      const tr = document.createElement('tr');
      for (const v of [k.name, k.id, k.roles.join(', '), k.created_at.slice(0, 16).replace('T', ' ')]) {
        const td = document.createElement('td');
        td.textContent = v;
        tr.append(td);
      }
      const td = document.createElement('td');
      if (k.revoked_at) td.textContent = 'revoked';
      else {
        const b = document.createElement('button');
        b.type = 'button';
        b.className = 'link';
        b.textContent = 'Revoke';
        b.dataset.keyId = k.id;
        b.addEventListener('click', () => {
          api('DELETE', `/v1/auth/keys/${k.id}`).then(keysView).then(() => done('key-revoked')).catch((e) => setError(e.message));
        });
        td.append(b);
      }
      tr.append(td);
      tr.dataset.keyId = k.id;
      body.append(tr);
    }
  }

  async function agentsView() {
    let agents = [];
    try {
      ({ agents } = await api('GET', '/v1/agents'));
    } catch (e) {
      if (e.status === 404) { show('home-agents', false); return; } // no agent store in this deployment
      throw e;
    }
    // Each agent's eval runs (newest first), linked to the run view.
    let runs = [];
    try {
      ({ runs } = await api('GET', '/v1/eval/runs'));
    } catch (e) {
      if (e.status !== 404 && e.status !== 403) throw e;
    }
    const body = $('agents-body');
    body.replaceChildren();
    for (const a of agents) {
      const tr = document.createElement('tr');
      tr.dataset.agentId = a.agent_id;
      for (const v of [a.name, a.agent_id.slice(0, 12), a.kind, `${a.size_bytes} B`]) {
        const td = document.createElement('td');
        td.textContent = v;
        tr.append(td);
      }
      const cell = document.createElement('td');
      const mine = runs.filter((r) => r.agent_id === a.agent_id);
      if (mine.length === 0) cell.textContent = 'no runs yet';
      for (const r of mine) {
        const link = document.createElement('a');
        link.href = `/eval/run?tenant=${encodeURIComponent(r.tenant_id)}&run=${encodeURIComponent(r.run_id)}`;
        link.textContent = `${r.run_id} (${r.suite}): ${r.status}`;
        link.className = 'agent-run';
        link.dataset.runId = r.run_id;
        cell.append(link, document.createElement('br'));
      }
      tr.append(cell);
      // Runs the agent over the shipped suite in Forge's own process (POST /v1/eval/runs), then links its run view.
      const act = document.createElement('td');
      if (a.kind === 'zip') {
        const b = document.createElement('button');
        b.type = 'button';
        b.className = 'link run-suite';
        b.textContent = `Run on ${SUITE}`;
        b.dataset.agentId = a.agent_id;
        b.addEventListener('click', () => {
          setError('');
          b.disabled = true;
          api('POST', '/v1/eval/runs', { suite: SUITE, agent_id: a.agent_id })
            .then(async (r) => {
              const link = $('run-started-link');
              link.href = r.run_url;
              link.textContent = r.run_id;
              show('run-started');
              await agentsView();
              done('run-started');
            })
            .catch((e) => { b.disabled = false; setError(e.message); done('error'); });
        });
        act.append(b);
      }
      tr.append(act);
      body.append(tr);
    }
  }

  function readBase64(file) {
    return new Promise((resolve, reject) => {
      const r = new FileReader();
      r.onload = () => resolve(String(r.result).replace(/^data:[^,]*,/, ''));
      r.onerror = () => reject(new Error('cannot read the file'));
      r.readAsDataURL(file);
    });
  }

  async function homePage() {
    try {
      me = await api('GET', '/v1/auth/me');
    } catch (e) {
      if (e.status === 401) { location.assign('/account/login'); return; }
      throw e;
    }
    $('who').textContent = `${me.email} · tenant ${me.tenant_id}`;
    // Keys carry roles the user holds.
    for (const o of [...$('key-role').options]) if (!me.roles.includes('admin') && !me.roles.includes(o.value)) o.remove();
    show('logout');
    show('home-2fa');
    show('home-keys');
    show('home-agents');
    totpView();
    $('logout').addEventListener('click', () => {
      api('POST', '/v1/auth/logout').then(() => location.assign('/account/login')).catch((e) => setError(e.message));
    });
    $('totp-start').addEventListener('click', () => {
      setError('');
      api('POST', '/v1/auth/2fa/setup').then((r) => {
        $('totp-secret').textContent = r.secret;
        $('totp-uri').href = r.otpauth_uri;
        show('totp-start', false);
        show('totp-setup');
        done('totp-setup');
      }).catch((e) => setError(e.message));
    });
    onSubmit('totp-enable-form', async () => {
      const r = await api('POST', '/v1/auth/2fa/enable', { code: $('totp-code').value.trim() });
      me.totp_enabled = true;
      show('totp-setup', false);
      const ul = $('recovery-codes');
      ul.replaceChildren(...r.recovery_codes.map((c) => { const li = document.createElement('li'); li.textContent = c; li.className = 'secret'; return li; }));
      show('recovery');
      totpView();
      done('totp-on');
    });
    onSubmit('key-form', async () => {
      const r = await api('POST', '/v1/auth/keys', { name: $('key-name').value, roles: [$('key-role').value] });
      $('key-secret').textContent = r.key;
      show('key-new');
      await keysView();
      done('key-created');
    });
    $('agent-kind').addEventListener('change', () => {
      const zip = $('agent-kind').value === 'zip';
      show('agent-file-label', zip);
      show('agent-image-label', !zip);
    });
    onSubmit('agent-form', async () => {
      const kind = $('agent-kind').value;
      const body = { tenant_id: me.tenant_id, name: $('agent-name').value, kind };
      if (kind === 'zip') {
        const f = $('agent-file').files[0];
        if (!f) throw new Error('choose a ZIP file');
        body.zip_base64 = await readBase64(f);
      } else body.ref = $('agent-image').value;
      const a = await api('POST', '/v1/agents', body);
      $('agent-done').textContent = `Uploaded ${a.name} (${a.agent_id.slice(0, 12)}).`;
      show('agent-done');
      await agentsView();
      done('agent-uploaded');
    });
    await keysView();
    await agentsView();
    done('ready');
  }

  const path = location.pathname.replace(/\/$/, '');
  const page = { '/account/signup': signupPage, '/account/verify': verifyPage, '/account/login': loginPage }[path] || homePage;
  Promise.resolve(page()).catch((e) => { setError(e.message); done('error'); });
})();
