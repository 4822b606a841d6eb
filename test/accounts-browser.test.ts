/// <reference lib="dom" />
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Accounts, OidcSignIn } from '../accounts/index.ts';
import { agentRoutes, evalRoutes } from '../api/index.ts';
import { evalPageRoutes } from '../eval/index.ts';
import { AgentStore, EvalEngine, EvalResults, EvalRunLauncher, EvalSuiteRegistry, loadEvalSuite, LocalProcessExecutor, packAgentDir, REFERENCE_AGENT_DIR } from '../eval/index.ts';
import { freePort, makeAccountsApp, type AccountsApp } from './helpers/accounts-app.ts';
import { computedStyle, SHARED_STYLE } from './helpers/chromium.ts';
import { startOidcProvider } from './helpers/oidc-provider.ts';

// The account pages in a real browser (Debian's chromium, headless) against the whole app on the embedded
// store, a real SMTP server and a real OpenID Connect provider (oidc-provider), all on loopback:
// signup -> the mailed link -> sign-in -> TOTP on -> sign out -> sign-in with the code -> an API key -> an
// agent upload -> its eval run on the account page and in the run view; and single sign-on through the
// provider's own pages.

let t: AccountsApp;
let provider: Awaited<ReturnType<typeof startOidcProvider>>;
let dir: string;
let ctx: BrowserContext;
let agents: AgentStore;
let launcher: EvalRunLauncher | undefined;
const runErrors: string[] = [];

const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'forge-accounts-browser-'));
  const appPort = await freePort();
  const idpPort = await freePort();
  const redirectUri = `http://127.0.0.1:${appPort}/v1/auth/oidc/callback`;
  provider = await startOidcProvider({ port: idpPort, clientId: 'forge', clientSecret: 'forge-client-secret', redirectUri });
  t = await makeAccountsApp({
    name: 'forge-accounts-browser',
    port: appPort,
    oidc: () => new OidcSignIn({ issuer: provider.issuer, clientId: 'forge', clientSecret: 'forge-client-secret', redirectUri, allowHttp: true }),
    plugins: (store) => {
      agents = new AgentStore(store, join(dir, 'agents'));
      const results = new EvalResults(store);
      // healthcare-v1 cut to two tasks (the page's button names it), in a suite directory of the test's own.
      const suite = loadEvalSuite('config/eval/healthcare-v1.yaml');
      mkdirSync(join(dir, 'suites'));
      writeFileSync(join(dir, 'suites', 'healthcare-v1.yaml'), JSON.stringify({ ...suite, tasks: suite.tasks.slice(0, 2) }));
      const suites = new EvalSuiteRegistry([join(dir, 'suites')]);
      // Runs started by POST /v1/eval/runs, in this process: the eval engine on the app's guardrail and bus,
      // real child processes (cost events are not collected here: this app has no collector).
      launcher = new EvalRunLauncher({
        suites,
        agents,
        results,
        maxRuns: 2,
        onError: (e, where) => runErrors.push(`${where}: ${String(e)}`),
        run: async (r, suite, signal) => {
          const engine = new EvalEngine({ agents, results, admissions: t.api.guardrail, bus: t.api.bus, costs: async () => ({ totalMicros: 0, duplicate: false }), executor: new LocalProcessExecutor() });
          await engine.run({ tenantId: r.tenantId, runId: r.runId, suite, agentId: r.agentId, concurrency: r.concurrency, signal });
        },
      });
      const l = launcher;
      return [async (app) => app.register(agentRoutes, { agents }), async (app) => app.register(evalRoutes, { results, store, startRun: (r) => l.start(r) }), async (app) => app.register(evalPageRoutes)];
    },
  });
  ctx = await chromium.launchPersistentContext(join(dir, 'chromium'), {
    executablePath: process.env.FORGE_TEST_CHROMIUM_BIN ?? '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1100, height: 1000 },
  });
}, 120_000);

afterAll(async () => {
  await launcher?.close();
  await ctx?.close();
  await t?.close();
  await provider?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Waits until the page's script says where it is (body[data-state]); fails with the page's error text. */
async function state(page: Page, want: string): Promise<void> {
  await page.waitForFunction((w) => ['error', w].includes(document.body.dataset.state ?? ''), want, { timeout: 20_000 });
  const got = await page.locator('body').getAttribute('data-state');
  if (got !== want) throw new Error(`page state ${got}: ${await page.locator('#error').innerText()}`);
}

describe('accounts in chromium', () => {
  it('a new user signs up, verifies, turns on 2FA, signs in with a code, makes a key, uploads an agent and sees its run', async () => {
    const page = await ctx.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    const email = `dana-${Date.now()}@example.com`;
    const tenant = `web-${Date.now().toString(36)}`;
    const password = 'a long enough password';

    await page.goto(`${t.base}/account/signup`);
    await state(page, 'ready');
    // Styled by the shared sheet and the account page's own rules (a narrow column of forms).
    expect(await computedStyle(page, 'body', Object.keys(SHARED_STYLE.body))).toEqual(SHARED_STYLE.body);
    expect(await computedStyle(page, '#signup h2', Object.keys(SHARED_STYLE.sectionH2))).toEqual(SHARED_STYLE.sectionH2);
    expect(await computedStyle(page, 'main', ['max-width', 'display'])).toEqual({ 'max-width': '820px', display: 'grid' });
    await page.fill('#signup-email', email);
    await page.fill('#signup-password', password);
    await page.fill('#signup-tenant', tenant);
    await page.click('#signup-submit');
    await state(page, 'signed-up');

    const mail = await t.smtp.next(email);
    const link = /(http:\/\/\S+\/account\/verify#token=\S+)/.exec(mail.text)?.[1];
    expect(link).toBeDefined();
    await page.goto(link!);
    await state(page, 'verified');
    expect(page.url()).not.toContain('token='); // the token left the address bar

    await page.goto(`${t.base}/account/login`);
    await state(page, 'ready');
    await page.fill('#login-email', email);
    await page.fill('#login-password', password);
    await page.click('#login-submit');
    await page.waitForURL(`${t.base}/account`);
    await state(page, 'ready');
    expect(await page.locator('#who').innerText()).toContain(email);
    // The session cookie is out of the script's reach.
    expect(await page.evaluate(() => document.cookie)).not.toContain('forge_session');
    const cookie = (await ctx.cookies(t.base)).find((c) => c.name === 'forge_session');
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Lax' });

    // Two-factor on.
    await page.click('#totp-start');
    await state(page, 'totp-setup');
    const secret = (await page.locator('#totp-secret').innerText()).trim();
    expect(secret).toMatch(/^[A-Z2-7]{16,}$/);
    await page.fill('#totp-code', await Accounts.totpCode(secret, Date.now()));
    await page.click('#totp-enable');
    await state(page, 'totp-on');
    expect(await page.locator('#recovery-codes li').count()).toBe(10);
    expect(await page.locator('#totp-status').innerText()).toMatch(/^On/);

    // Sign out, then in again: the password alone is not enough.
    await page.click('#logout');
    await page.waitForURL(`${t.base}/account/login`);
    await state(page, 'ready');
    await page.fill('#login-email', email);
    await page.fill('#login-password', password);
    await page.click('#login-submit');
    await state(page, 'second-factor');
    expect((await ctx.cookies(t.base)).some((c) => c.name === 'forge_session')).toBe(false);
    // The code of the next 30 s step (the current one was spent turning 2FA on).
    await page.fill('#second-factor-code', await Accounts.totpCode(secret, Date.now() + 30_000));
    await page.click('#second-factor-submit');
    await page.waitForURL(`${t.base}/account`);
    await state(page, 'ready');

    // An API key for the tenant, shown once, usable at once.
    await page.fill('#key-name', 'ci');
    await page.selectOption('#key-role', 'runner');
    await page.click('#key-create');
    await state(page, 'key-created');
    const key = (await page.locator('#key-secret').innerText()).trim();
    expect(t.keys.verify(key)).toMatchObject({ tenantId: tenant, roles: ['runner'] });
    expect(await page.locator('#keys-body tr').count()).toBe(1);

    // The reference agent's ZIP through the web UI, onto the agent store.
    const zip = join(dir, 'agent.zip');
    writeFileSync(zip, packAgentDir(REFERENCE_AGENT_DIR));
    await page.fill('#agent-name', 'triage-bot');
    await page.selectOption('#agent-kind', 'zip');
    await page.setInputFiles('#agent-file', zip);
    await page.click('#agent-upload');
    await state(page, 'agent-uploaded');
    const rows = page.locator('#agents-body tr');
    expect(await rows.count()).toBe(1);
    expect(await rows.first().innerText()).toContain('triage-bot');
    const byKey = await fetch(`${t.base}/v1/agents`, { headers: { authorization: `Bearer ${key}` } });
    const listed = (await byKey.json()) as { agents: Array<{ name: string; tenant: string; kind: string }> };
    expect(listed.agents).toEqual([expect.objectContaining({ name: 'triage-bot', tenant, kind: 'zip' })]);
    expect(await rows.first().innerText()).toContain('no runs yet');

    // The platform runs it: the row's button starts a run over healthcare-v1 (two tasks here) in the server.
    await rows.first().locator('button.run-suite').click();
    await state(page, 'run-started');
    const runLink = page.locator('#run-started-link');
    const runId = (await runLink.innerText()).trim();
    expect(await runLink.getAttribute('href')).toBe(`/eval/run?tenant=${tenant}&run=${runId}`);
    let view: { run: { status: string }; tasks: Array<{ passed: boolean }> } | undefined;
    for (let i = 0; i < 300; i++) {
      const r = await fetch(`${t.base}/v1/eval/runs/${runId}`, { headers: { authorization: `Bearer ${key}` } });
      view = (await r.json()) as typeof view;
      if (view?.run.status !== 'running') break;
      await new Promise((res) => setTimeout(res, 100));
    }
    expect(view?.run.status).toBe('finished');
    expect(view?.tasks.length).toBe(2);
    const passed = view!.tasks.filter((x) => x.passed).length;

    // The account page shows the agent's run and links to its run view.
    await page.reload();
    await state(page, 'ready');
    const run = page.locator('#agents-body a.agent-run');
    expect(await run.innerText()).toContain(`${runId} (healthcare-v1): finished`);
    await run.click();
    await page.waitForURL(/\/eval\/run\?/);
    await page.fill('#api-key', key);
    await page.click('#load');
    await page.waitForFunction(() => !(document.getElementById('content') as HTMLElement).hidden, undefined, { timeout: 20_000 });
    expect(await page.locator('#summary').innerText()).toContain(`Passed\n${passed}/2`);
    expect(errors).toEqual([]);
    expect(runErrors).toEqual([]);

    const kinds = (await t.store.guardrailEvents({ scope: { tenantId: tenant }, from: 0, to: Date.now() + 60_000 })).map((e) => e.kind);
    expect(kinds).toEqual(expect.arrayContaining(['account_created', 'email_verified', 'sign_in', 'sign_out', 'two_factor_change', 'key_created']));
    await page.close();
  }, 60_000);

  it('single sign-on through the OIDC provider opens a session and an account', async () => {
    const page = await ctx.newPage();
    await ctx.clearCookies();
    await page.goto(`${t.base}/account/login`);
    await state(page, 'ready');
    await page.click('#sso-link');
    // The provider's own sign-in page (development interactions: any login).
    await page.waitForURL(new RegExp(`^${provider.issuer}/`));
    await page.fill('input[name=login]', 'sam');
    await page.fill('input[name=password]', 'anything');
    await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
    // Its consent page, when it asks.
    for (let i = 0; i < 3 && page.url().startsWith(provider.issuer); i++) {
      if ((await page.locator('input[name=prompt][value=consent]').count()) === 0) throw new Error(`unexpected provider page ${page.url()}: ${await page.locator('body').innerText()}`);
      await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
    }
    expect(page.url(), await page.locator('body').innerText()).toBe(`${t.base}/account`);
    await state(page, 'ready');
    expect(await page.locator('#who').innerText()).toContain('sam@sso.example.com');
    const me = await page.evaluate(async () => (await fetch('/v1/auth/me')).json());
    expect(me).toMatchObject({ email: 'sam@sso.example.com', roles: ['runner', 'finance', 'auditor'], totp_enabled: false });
    const events = await t.store.guardrailEvents({ scope: { tenantId: (me as { tenant_id: string }).tenant_id }, from: 0, to: Date.now() + 60_000 });
    expect(events.find((e) => e.kind === 'sign_in')?.details).toMatchObject({ method: 'oidc', email: 'sam@sso.example.com' });
    // A forged callback (a state nobody started) is refused.
    const forged = await page.evaluate(async () => (await fetch('/v1/auth/oidc/callback?state=forged-state-value-0123456789&code=x', { redirect: 'manual' })).status);
    expect(forged).toBe(400);
    await page.close();
  }, 60_000);
});
