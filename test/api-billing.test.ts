import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Stripe from 'stripe';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { billingRoutes } from '../api/routes/billing.ts';
import { billingFromConfig, type BillingParts } from '../billing/index.ts';
import { InProcessHaltBus } from '../guard/index.ts';
import { openStore, type Store } from '../store/index.ts';
import { costEvent, makeTestApi, type TestApi } from './helpers/api.ts';
import { HttpReceiver } from './helpers/http-receiver.ts';
import { StripeReceiver } from './helpers/stripe-receiver.ts';

const STRIPE_KEY = 'sk_test_forgebilling';
const WEBHOOK_SECRET = 'whsec_forgeroutes';
const USER_KEY = 'sk-user-SECRET-7f3a9c21b4';
const signer = new Stripe('sk_test_signer_only');

let dir = '';
let store: Store;
let provider: HttpReceiver;
let stripeApi: StripeReceiver;
let bus: InProcessHaltBus;
let parts: BillingParts;
let t: TestApi;
const storeErrors: unknown[] = [];
/** Every response body the billing routes gave, to look for the BYOK key in. */
const bodies: string[] = [];

function env(extra: Record<string, string> = {}): Record<string, string> {
  return {
    FORGE_PLANS_FILE: 'config/plans.yaml',
    FORGE_VAULT_MASTER_KEY: randomBytes(32).toString('base64'),
    FORGE_VAULT_MASTER_KEY_ID: 'k1',
    FORGE_BYOK_OPENAI_BASE_URL: `${provider.url}/v1`,
    STRIPE_SECRET_KEY: STRIPE_KEY,
    STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET,
    FORGE_STRIPE_API_BASE_URL: stripeApi.url,
    FORGE_STRIPE_MAX_RETRIES: '0',
    ...extra,
  };
}

async function appWith(p: Partial<BillingParts> & Pick<BillingParts, 'service'>): Promise<TestApi> {
  const box: { t?: TestApi } = {};
  const api = await makeTestApi({
    parts: {
      plugins: [
        async (app) => {
          app.addHook('onSend', async (_req, _reply, payload) => {
            if (typeof payload === 'string') bodies.push(payload);
            return payload;
          });
          await app.register(billingRoutes, { ...(p as BillingParts), now: () => (box.t as TestApi).clock.now });
        },
      ],
    },
  });
  box.t = api;
  return api;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'forge-api-billing-'));
  provider = await HttpReceiver.start();
  stripeApi = await StripeReceiver.start(STRIPE_KEY);
  store = await openStore({ dataDir: join(dir, 'clickhouse'), onError: (e) => storeErrors.push(e), writer: { flushIntervalMs: 10 } });
  bus = new InProcessHaltBus();
  parts = await billingFromConfig({ env: env(), store, bus, onError: (e) => storeErrors.push(e) });
  parts.start();
  t = await appWith(parts);
}, 60_000);

afterAll(async () => {
  await t?.close();
  await parts?.close();
  await bus?.close();
  await store?.close();
  await provider?.close();
  await stripeApi?.close();
  rmSync(dir, { recursive: true, force: true });
  expect(storeErrors).toEqual([]);
});

const auth = (key: string) => ({ authorization: `Bearer ${key}` });
const fresh = (p: string) => `${p}-${randomUUID().slice(0, 8)}`;
const MONTH_END = '2026-04-01T00:00:00.000Z'; // the test clock is 2026-03-02T09:00Z

async function setPlan(tenant: string, plan_id: string, extra: Record<string, unknown> = {}) {
  const r = await t.app.inject({ method: 'PUT', url: `/v1/billing/tenants/${tenant}/account`, headers: auth(t.key(['finance'])), payload: { plan_id, ...extra } });
  expect(r.statusCode).toBe(200);
  return r.json();
}

describe('auth, roles, tenants, schemas', () => {
  it('no key 401; wrong role 403 naming the roles', async () => {
    const r = await t.app.inject({ method: 'GET', url: '/v1/billing/tenants/acme/credits' });
    expect(r.statusCode).toBe(401);
    expect(r.json().error.code).toBe('FORGE_ERR_UNAUTHENTICATED');
    const runner = auth(t.key(['runner'], 'acme'));
    const put = await t.app.inject({ method: 'PUT', url: '/v1/billing/tenants/acme/account', headers: runner, payload: { plan_id: 'pro' } });
    expect(put.statusCode).toBe(403);
    expect(put.json().error).toMatchObject({ code: 'FORGE_ERR_FORBIDDEN_ROLE' });
    expect(put.json().error.message).toContain('finance');
    const start = await t.app.inject({ method: 'POST', url: '/v1/billing/jobs', headers: auth(t.key(['finance'], 'acme')), payload: { tenant_id: 'acme', user_id: 'u', execution_id: 'e', max_tokens: 10, skill: 'classify' } });
    expect(start.statusCode).toBe(403);
    const saveKey = await t.app.inject({ method: 'PUT', url: '/v1/billing/tenants/acme/users/u1/keys/openai', headers: auth(t.key(['finance'], 'acme')), payload: { api_key: USER_KEY } });
    expect(saveKey.statusCode).toBe(403);
    const doc = await t.app.inject({ method: 'GET', url: '/docs/json' });
    expect(Object.keys(doc.json().paths)).toEqual(expect.arrayContaining(['/v1/billing/jobs', '/v1/billing/stripe/webhook', '/v1/billing/reports/margin', '/v1/billing/tenants/{tenant}/users/{user}/keys/{provider}']));
  });

  it("another tenant's data is refused with nothing of it in the answer; its execution cannot be settled", async () => {
    const a = fresh('acme');
    await setPlan(a, 'enterprise');
    // A team's own finance key can neither credit itself nor set its own plan: those are the platform's.
    const own = auth(t.key(['finance'], a));
    expect((await t.app.inject({ method: 'POST', url: `/v1/billing/tenants/${a}/credits/purchases`, headers: own, payload: { pack: 'growth', purchase_id: 'pi_0' } })).statusCode).toBe(403);
    expect((await t.app.inject({ method: 'PUT', url: `/v1/billing/tenants/${a}/account`, headers: own, payload: { plan_id: 'team' } })).statusCode).toBe(403);
    const fin = auth(t.key(['finance']));
    expect((await t.app.inject({ method: 'POST', url: `/v1/billing/tenants/${a}/credits/purchases`, headers: fin, payload: { pack: 'growth', purchase_id: 'pi_1' } })).json()).toMatchObject({ available: 6000 });
    const start = await t.app.inject({ method: 'POST', url: '/v1/billing/jobs', headers: auth(t.key(['runner'], a)), payload: { tenant_id: a, user_id: 'u1', execution_id: 'x1', model: 'gpt-4o', max_tokens: 100 } });
    expect(start.json()).toMatchObject({ decision: 'allow', hold: { unit: 'credit', amount: 5 } });

    const other = fresh('globex');
    const g = { fin: auth(t.key(['finance', 'auditor'], other)), run: auth(t.key(['runner'], other)), admin: auth(t.key(['admin'], other)) };
    const reads = [
      `/v1/billing/tenants/${a}/account`,
      `/v1/billing/tenants/${a}/credits`,
      `/v1/billing/tenants/${a}/credits/entries`,
      `/v1/billing/tenants/${a}/usage`,
      `/v1/billing/tenants/${a}/users/u1/keys`,
      `/v1/billing/tenants/${a}/route?skill=classify`,
    ];
    for (const url of reads) {
      const r = await t.app.inject({ method: 'GET', url, headers: g.admin });
      expect(r.statusCode, url).toBe(403);
      expect(r.json().error.code).toBe('FORGE_ERR_FORBIDDEN_TENANT');
      expect(r.body).not.toMatch(/5995|6000|enterprise|pi_1/);
    }
    const buy = await t.app.inject({ method: 'POST', url: `/v1/billing/tenants/${a}/credits/purchases`, headers: g.fin, payload: { pack: 'scale', purchase_id: 'pi_x' } });
    expect(buy.statusCode).toBe(403);
    const plan = await t.app.inject({ method: 'PUT', url: `/v1/billing/tenants/${a}/account`, headers: g.admin, payload: { plan_id: 'free' } });
    expect(plan.statusCode).toBe(403);
    const job = await t.app.inject({ method: 'POST', url: '/v1/billing/jobs', headers: g.run, payload: { tenant_id: a, user_id: 'u1', execution_id: 'x2', model: 'gpt-4o', max_tokens: 100 } });
    expect(job.statusCode).toBe(403);
    // Naming its own tenant, it finds no such execution, and acme's hold stays open.
    const settle = await t.app.inject({ method: 'POST', url: '/v1/billing/jobs/x1/settle', headers: g.run, payload: { tenant_id: other, user_id: 'u1', llm_cost_usd: 0 } });
    expect(settle.statusCode).toBe(404);
    expect(settle.json().error).toMatchObject({ code: 'FORGE_ERR_NOT_FOUND', field: 'execution_id' });
    const settleA = await t.app.inject({ method: 'POST', url: '/v1/billing/jobs/x1/settle', headers: g.run, payload: { tenant_id: a, user_id: 'u1', llm_cost_usd: 0 } });
    expect(settleA.statusCode).toBe(403);
    const bal = await t.app.inject({ method: 'GET', url: `/v1/billing/tenants/${a}/credits`, headers: fin });
    expect(bal.json()).toMatchObject({ available: 5995, held: 5, open_holds: 1 });
    // The margin report spans every tenant: not for a tenant-bound key.
    expect((await t.app.inject({ method: 'GET', url: '/v1/billing/reports/margin', headers: g.fin })).statusCode).toBe(403);
    expect((await t.app.inject({ method: 'POST', url: '/v1/billing/vault/rotate', headers: g.admin })).statusCode).toBe(403);
  });

  it('schema violations: 400 naming the field', async () => {
    const k = auth(t.key(['runner', 'finance', 'admin']));
    const cases: Array<[string, string, unknown, string]> = [
      ['POST', '/v1/billing/jobs', { tenant_id: 'acme', execution_id: 'e', max_tokens: 10, skill: 'classify' }, 'user_id'],
      ['POST', '/v1/billing/jobs', { tenant_id: 'acme', user_id: 'u', execution_id: 'e', max_tokens: 0, skill: 'classify' }, 'max_tokens'],
      ['POST', '/v1/billing/jobs', { tenant_id: 'acme', user_id: 'u', execution_id: 'e', max_tokens: 10, skill: 'classify', cost: 1 }, 'cost'],
      ['POST', '/v1/billing/jobs', { tenant_id: 'acme', user_id: 'u', execution_id: 'e', max_tokens: 10, skill: 'classify', model: 'gpt-4o' }, 'skill'],
      ['POST', '/v1/billing/jobs', { tenant_id: 'acme', user_id: 'u', execution_id: 'e', max_tokens: 10, model: 'gpt-4o', estimated_llm_cost_usd: -1 }, 'estimated_llm_cost_usd'],
      ['POST', '/v1/billing/jobs/e1/settle', { tenant_id: 'acme', user_id: 'u', llm_cost_usd: 0, model_calls: { ultra: 1 } }, 'model_calls.ultra'],
      ['POST', '/v1/billing/tenants/acme/credits/purchases', { pack: 'mega', purchase_id: 'p1' }, 'pack'],
      ['PUT', '/v1/billing/tenants/acme/account', { plan_id: 'gold' }, 'plan_id'],
      ['PUT', '/v1/billing/tenants/acme/account', { plan_id: 'pro', seats: 3 }, 'seats'],
      ['PUT', '/v1/billing/tenants/acme/users/u1/keys/openai', { api_key: 'has a space in it' }, 'api_key'],
      ['PUT', '/v1/billing/tenants/acme/users/u1/keys/mistral', { api_key: 'sk-abcdefgh1234' }, 'provider'],
      ['PUT', '/v1/billing/tenants/acme/users/u1/byok-mode', { mode: 'models' }, 'models'],
      ['PUT', '/v1/billing/tenants/acme/overage', { overage_opt_in: true }, 'overage_opt_in'], // Free has no overage
    ];
    for (const [method, url, payload, field] of cases) {
      const r = await t.app.inject({ method: method as 'POST', url, headers: k, payload: payload as object });
      expect(r.statusCode, `${url} ${field}`).toBe(400);
      expect(r.json().error, `${url} ${field}`).toMatchObject({ code: 'FORGE_ERR_VALIDATION', field });
    }
    const q = await t.app.inject({ method: 'GET', url: '/v1/billing/reports/margin?month=2026-13', headers: auth(t.key(['finance'])) });
    expect(q.json().error).toMatchObject({ code: 'FORGE_ERR_VALIDATION', field: 'month' });
    // Nothing stored by the refused key save.
    const keys = await t.app.inject({ method: 'GET', url: '/v1/billing/tenants/acme/users/u1/keys', headers: k });
    expect(keys.json().keys).toEqual([]);
  });
});

describe('limits through the routes', () => {
  it('Free: the 99th and 100th executions of the month run, the 101st is refused with the reset time', async () => {
    const tenant = fresh('free');
    const now = t.clock.now;
    // 98 executions already in the event log this month (and one last month, which does not count).
    const seeded = Array.from({ length: 98 }, (_, i) => costEvent({ tenantId: tenant, totalMicros: 1000, eventTime: now - 3_600_000 - i * 1000 }));
    seeded.push(costEvent({ tenantId: tenant, totalMicros: 1000, eventTime: Date.parse('2026-02-27T00:00:00Z') }));
    await store.writer.write(seeded);
    const run = auth(t.key(['runner'], tenant));
    const usage0 = await t.app.inject({ method: 'GET', url: `/v1/billing/tenants/${tenant}/usage`, headers: run });
    expect(usage0.json()).toMatchObject({ plan_id: 'free', executions: 98, included: 100, next: { decision: 'allow', execution_number: 99 } });

    const start = (id: string) => t.app.inject({ method: 'POST', url: '/v1/billing/jobs', headers: run, payload: { tenant_id: tenant, user_id: 'u1', execution_id: id, skill: 'classify', max_tokens: 2000 } });
    const e99 = (await start('e99')).json();
    expect(e99).toMatchObject({ decision: 'allow', execution_number: 99, plan_id: 'free', model: { id: 'gpt-4o-mini', tier: 'fast' }, hold: { unit: 'run', amount: 1 }, key: { source: 'platform' } });
    // The runner's task finalizes: its event reaches the log, then billing is settled.
    await store.writer.write([costEvent({ tenantId: tenant, totalMicros: 1000, eventTime: now })]);
    const s99 = await t.app.inject({ method: 'POST', url: '/v1/billing/jobs/e99/settle', headers: run, payload: { tenant_id: tenant, user_id: 'u1', llm_cost_usd: '0.001' } });
    expect(s99.json()).toMatchObject({ charged: 1, refunded: 0, balance: { free_runs_left: 99, held: 0 } });

    const e100 = (await start('e100')).json();
    expect(e100).toMatchObject({ decision: 'allow', execution_number: 100 });
    expect(e100.alerts).toEqual([expect.objectContaining({ metric: 'executions_month', percent: 100, value: 100, limit: 100 })]);
    const e101 = await start('e101');
    expect(e101.statusCode).toBe(200);
    expect(e101.json()).toMatchObject({ decision: 'deny', reason: 'limit_reached', resets_at: MONTH_END });
    expect(e101.json().message).toContain('100');
    const usage = await t.app.inject({ method: 'GET', url: `/v1/billing/tenants/${tenant}/usage?user_id=u1`, headers: auth(t.key(['finance'], tenant)) });
    expect(usage.json()).toMatchObject({
      executions: 100,
      next: { decision: 'deny', reason: 'limit_reached', resets_at: MONTH_END, limit: 100 },
      user: { user_id: 'u1', platform_spend_today_usd: '0.001', daily_spend_cap_usd: '1' },
    });
    // A cancelled execution no longer counts.
    await t.app.inject({ method: 'POST', url: '/v1/billing/jobs/e100/cancel', headers: run, payload: { tenant_id: tenant } });
    expect((await start('e100b')).json()).toMatchObject({ decision: 'allow', execution_number: 100 });
  });

  it('a halted tenant gets no new hold', async () => {
    const tenant = fresh('halt');
    await bus.publish({ scope: `tenant:${tenant}`, state: 'HARD_STOP', previous: 'NORMAL', seq: 1, at: t.clock.now, reason: 'day >= B_day_hard', holds: [], weekMicros: 0 });
    const r = await t.app.inject({ method: 'POST', url: '/v1/billing/jobs', headers: auth(t.key(['runner'], tenant)), payload: { tenant_id: tenant, user_id: 'u1', execution_id: 'h1', skill: 'classify', max_tokens: 10 } });
    expect(r.json()).toMatchObject({ decision: 'deny', reason: 'halted' });
  });
});

describe('credits through the routes', () => {
  it('buy a pack, hold at start, deduct on settle and refund the rest; the ledger balances', async () => {
    const tenant = fresh('cred');
    await setPlan(tenant, 'enterprise'); // no free monthly runs: every job takes credits
    const fin = auth(t.key(['finance']));
    const run = auth(t.key(['runner'], tenant));
    const buy = await t.app.inject({ method: 'POST', url: `/v1/billing/tenants/${tenant}/credits/purchases`, headers: fin, payload: { pack: 'starter', purchase_id: 'pi_starter_1' } });
    expect(buy.json()).toEqual({ tenant_id: tenant, pack: 'starter', credits: 1100, price_usd: '10', available: 1100, replay: false });
    const again = await t.app.inject({ method: 'POST', url: `/v1/billing/tenants/${tenant}/credits/purchases`, headers: fin, payload: { pack: 'starter', purchase_id: 'pi_starter_1' } });
    expect(again.json()).toMatchObject({ available: 1100, replay: true });

    const start = await t.app.inject({ method: 'POST', url: '/v1/billing/jobs', headers: run, payload: { tenant_id: tenant, user_id: 'u1', execution_id: 'j1', model: 'claude-opus', max_tokens: 4000, sandbox_tries: 3 } });
    expect(start.json()).toMatchObject({ decision: 'allow', hold: { unit: 'credit', amount: 25 + 3 * 2 }, model: { id: 'claude-opus', tier: 'heavy' } });
    expect((await t.app.inject({ method: 'GET', url: `/v1/billing/tenants/${tenant}/credits`, headers: run })).json()).toEqual({ tenant_id: tenant, available: 1069, held: 31, open_holds: 1, free_runs_left: 0 });

    // The spend is u1's: a settle naming another user is refused and the job stays open.
    const otherUser = await t.app.inject({ method: 'POST', url: '/v1/billing/jobs/j1/settle', headers: run, payload: { tenant_id: tenant, user_id: 'u2', llm_cost_usd: '0.03' } });
    expect(otherUser.statusCode).toBe(400);
    expect(otherUser.json().error).toMatchObject({ code: 'FORGE_ERR_VALIDATION', field: 'user_id' });
    const settle = await t.app.inject({ method: 'POST', url: '/v1/billing/jobs/j1/settle', headers: run, payload: { tenant_id: tenant, user_id: 'u1', model_calls: { heavy: 1 }, sandbox_tries: 1, llm_cost_usd: '0.03' } });
    expect(settle.json()).toMatchObject({ execution_id: 'j1', charged: 27, refunded: 4, shortfall: 0, balance: { available: 1073, held: 0, open_holds: 0 } });
    const twice = await t.app.inject({ method: 'POST', url: '/v1/billing/jobs/j1/settle', headers: run, payload: { tenant_id: tenant, user_id: 'u1', llm_cost_usd: 0 } });
    expect(twice.statusCode).toBe(404);

    const entries = await t.app.inject({ method: 'GET', url: `/v1/billing/tenants/${tenant}/credits/entries`, headers: auth(t.key(['auditor'], tenant)) });
    const e = entries.json();
    expect(e.balanced).toBe(true);
    expect([...new Set(e.entries.map((x: { kind: string }) => x.kind))].sort()).toEqual(['hold', 'purchase', 'settle']);
    const available = e.entries.filter((x: { account: string }) => x.account === 'available').reduce((s: number, x: { amount: number }) => s + x.amount, 0);
    expect(available).toBe(1073);
    expect(e.entries.reduce((s: number, x: { amount: number }) => s + x.amount, 0)).toBe(0);
    // The runner may read the balance but not the ledger.
    expect((await t.app.inject({ method: 'GET', url: `/v1/billing/tenants/${tenant}/credits/entries`, headers: run })).statusCode).toBe(403);
  });
});

describe('BYOK keys through the routes', () => {
  it('saved after the provider accepted it, listed as metadata only, routed, deleted; the key is in no response', async () => {
    const tenant = fresh('byok');
    await setPlan(tenant, 'pro');
    const admin = auth(t.key(['admin'], tenant));
    const before = provider.requests.length;
    const save = await t.app.inject({ method: 'PUT', url: `/v1/billing/tenants/${tenant}/users/u1/keys/openai`, headers: admin, payload: { api_key: USER_KEY } });
    expect(save.statusCode).toBe(200);
    expect(save.json()).toEqual({ provider: 'openai', agent_id: '*', master_key_id: 'k1', created_at: expect.any(String), updated_at: expect.any(String) });
    const test = provider.requests.slice(before);
    expect(test.map((r) => `${r.method} ${r.path}`)).toEqual(['GET /v1/models']);
    expect(test[0]?.headers.authorization).toBe(`Bearer ${USER_KEY}`);

    // A key the provider refuses is not kept.
    provider.failNext(1, 401, 'invalid_api_key');
    const bad = await t.app.inject({ method: 'PUT', url: `/v1/billing/tenants/${tenant}/users/u1/keys/openai`, headers: admin, payload: { api_key: 'sk-rejected-0000000', agent_id: 'agent-7' } });
    expect(bad.statusCode).toBe(422);
    expect(bad.json().error).toMatchObject({ code: 'FORGE_ERR_BYOK_KEY_REJECTED', field: 'api_key' });
    const list = await t.app.inject({ method: 'GET', url: `/v1/billing/tenants/${tenant}/users/u1/keys`, headers: auth(t.key(['auditor'], tenant)) });
    expect(list.json().keys).toEqual([expect.objectContaining({ provider: 'openai', agent_id: '*', master_key_id: 'k1' })]);

    const run = auth(t.key(['runner'], tenant));
    const route = await t.app.inject({ method: 'GET', url: `/v1/billing/tenants/${tenant}/route?skill=classify&user_id=u1`, headers: run });
    expect(route.json()).toMatchObject({ ok: true, model: { id: 'gpt-4o-mini', provider: 'openai' }, tier: 'fast', quality: 0.85, key_source: 'byok' });
    const best = await t.app.inject({ method: 'GET', url: `/v1/billing/tenants/${tenant}/route?skill=classify&preference=best_quality&user_id=u1`, headers: run });
    expect(best.json()).toMatchObject({ model: { id: 'claude-haiku' }, key_source: 'platform' });
    const job = await t.app.inject({ method: 'POST', url: '/v1/billing/jobs', headers: run, payload: { tenant_id: tenant, user_id: 'u1', execution_id: 'b1', skill: 'classify', max_tokens: 100 } });
    expect(job.json()).toMatchObject({ decision: 'allow', key: { source: 'byok', provider: 'openai', agent_specific: false }, hold: null });

    // Only ciphertext is stored.
    const rs = await store.client.query({ query: `SELECT sealed FROM ${store.database}.byok_keys WHERE tenant_id = {t:String}`, query_params: { t: tenant }, format: 'JSONEachRow' });
    const sealed = await rs.json<{ sealed: string }>();
    expect(sealed.length).toBe(1);
    expect(sealed[0]?.sealed).not.toContain(USER_KEY);

    const del = await t.app.inject({ method: 'DELETE', url: `/v1/billing/tenants/${tenant}/users/u1/keys/openai`, headers: admin });
    expect(del.json()).toEqual({ deleted: true });
    expect((await t.app.inject({ method: 'DELETE', url: `/v1/billing/tenants/${tenant}/users/u1/keys/openai`, headers: admin })).statusCode).toBe(404);
    const after = await t.app.inject({ method: 'GET', url: `/v1/billing/tenants/${tenant}/route?skill=classify&user_id=u1`, headers: run });
    expect(after.json()).toMatchObject({ key_source: 'platform' });

    // Rotation (an admin bound to all tenants) re-seals under the active key.
    const rot = await t.app.inject({ method: 'POST', url: '/v1/billing/vault/rotate', headers: auth(t.key(['admin'])) });
    expect(rot.json()).toMatchObject({ active_key_id: 'k1' });

    expect(bodies.length).toBeGreaterThan(10);
    for (const b of bodies) expect(b).not.toContain(USER_KEY);
  });
});

describe('Stripe through the routes', () => {
  function signed(event: Record<string, unknown>, secret = WEBHOOK_SECRET): { payload: string; header: string } {
    const payload = JSON.stringify(event);
    return { payload, header: signer.webhooks.generateTestHeaderString({ payload, secret, timestamp: Math.floor(t.clock.now / 1000) }) };
  }
  const webhook = (s: { payload: string; header?: string }) =>
    t.app.inject({ method: 'POST', url: '/v1/billing/stripe/webhook', headers: { 'content-type': 'application/json; charset=utf-8', ...(s.header ? { 'stripe-signature': s.header } : {}) }, payload: s.payload });

  it('subscribe through Stripe; a signed webhook (no API key) moves the state, a forged one is rejected and changes nothing', async () => {
    const tenant = fresh('stripe');
    const fin = auth(t.key(['finance'], tenant));
    const sub = await t.app.inject({ method: 'POST', url: `/v1/billing/tenants/${tenant}/subscription`, headers: fin, payload: { plan_id: 'team', byok: true, seats: 3, email: 'ops@example.com', request_id: 'req-1' } });
    expect(sub.statusCode).toBe(200);
    const acct = sub.json();
    expect(acct).toMatchObject({ tenant_id: tenant, plan_id: 'team', effective_plan_id: 'team', byok: true, seats: 3, status: 'active', monthly_price_usd: '57' });
    expect(stripeApi.problems()).toEqual([]);
    // A team on a Stripe subscription changes plan in Stripe, not by hand.
    const manual = await t.app.inject({ method: 'PUT', url: `/v1/billing/tenants/${tenant}/account`, headers: auth(t.key(['finance'])), payload: { plan_id: 'pro' } });
    expect(manual.statusCode).toBe(409);

    const event = (id: string, type: string) => ({ id, object: 'event', type, created: Math.floor(t.clock.now / 1000), data: { object: { id: 'in_1', object: 'invoice', customer: acct.customer_id } } });
    const forged = signed(event('evt_forged', 'invoice.payment_failed'), 'whsec_not_the_secret');
    const f = await webhook(forged);
    expect(f.statusCode).toBe(400);
    expect(f.json().error).toMatchObject({ code: 'FORGE_ERR_STRIPE_SIGNATURE', field: 'stripe-signature' });
    expect((await webhook({ payload: forged.payload })).statusCode).toBe(400);
    const good = signed(event('evt_failed_1', 'invoice.payment_failed'));
    const tampered = await webhook({ payload: good.payload.replace('invoice.payment_failed', 'invoice.payment_succeeded'), header: good.header });
    expect(tampered.statusCode).toBe(400);
    const read = () => t.app.inject({ method: 'GET', url: `/v1/billing/tenants/${tenant}/account`, headers: fin });
    expect((await read()).json()).toMatchObject({ status: 'active' });

    const ok = await webhook(good);
    expect(ok.statusCode).toBe(200);
    expect(ok.json()).toEqual({ received: true, handled: true, type: 'invoice.payment_failed' });
    expect((await read()).json()).toMatchObject({ status: 'past_due', effective_plan_id: 'team' });
    expect((await webhook(good)).json()).toMatchObject({ handled: false, reason: 'duplicate' });
  });
});

describe('finance: margin per tier', () => {
  it('JSON and CSV with hand-checked numbers', async () => {
    // Own billing database, so only these accounts are in the report; LLM cost comes from the shared event log.
    const own = await billingFromConfig({ env: env({ FORGE_BILLING_DATABASE: `bill_${randomUUID().replaceAll('-', '').slice(0, 10)}` }), store, onError: (e) => storeErrors.push(e) });
    const m = await appWith(own);
    try {
      const fin = auth(m.key(['finance']));
      const ids = { free: fresh('m-free'), pro1: fresh('m-pro1'), pro2: fresh('m-pro2'), team: fresh('m-team'), ent: fresh('m-ent') };
      const put = async (tenant: string, body: Record<string, unknown>) => {
        const r = await m.app.inject({ method: 'PUT', url: `/v1/billing/tenants/${tenant}/account`, headers: fin, payload: body });
        expect(r.statusCode).toBe(200);
      };
      await put(ids.free, { plan_id: 'free' });
      await put(ids.pro1, { plan_id: 'pro' });
      await put(ids.pro2, { plan_id: 'pro', byok: true });
      await put(ids.team, { plan_id: 'team', seats: 3 });
      await put(ids.ent, { plan_id: 'enterprise' });
      const march = Date.parse('2026-03-01T10:00:00Z');
      const llm = (tenantId: string, usd: number, eventTime = march) => costEvent({ tenantId, totalMicros: Math.round(usd * 1e6), rliMicros: 0, llmMicros: Math.round(usd * 1e6), eventTime });
      await store.writer.write([
        llm(ids.free, 0.4),
        llm(ids.pro1, 2),
        llm(ids.pro1, 0.5),
        llm(ids.pro1, 7, Date.parse('2026-02-28T23:59:59Z')), // February: not in March's report
        llm(ids.pro2, 0.1),
        llm(ids.team, 30),
        llm(ids.ent, 1),
        llm(fresh('no-account'), 99), // no billing account: not in the report
      ]);

      const r = await m.app.inject({ method: 'GET', url: '/v1/billing/reports/margin?month=2026-03', headers: fin });
      expect(r.statusCode).toBe(200);
      const j = r.json();
      expect(j).toMatchObject({ from: '2026-03-01T00:00:00.000Z', to: '2026-04-01T00:00:00.000Z' });
      // pro: 9 + 5 (BYOK) = 14 revenue, 2.6 LLM; team: 29 x 3 = 87 vs 30; enterprise: custom price, counted 0.
      // total: 101 revenue, 0.4 + 2.6 + 30 + 1 = 34 LLM, margin 67, 67 / 101 = 0.6634.
      expect(j.rows).toEqual([
        { plan_id: 'free', tenants: 1, seats: 1, custom_priced: 0, revenue_usd: '0', llm_cost_usd: '0.4', margin_usd: '-0.4', margin_ratio: null },
        { plan_id: 'pro', tenants: 2, seats: 2, custom_priced: 0, revenue_usd: '14', llm_cost_usd: '2.6', margin_usd: '11.4', margin_ratio: '0.8143' },
        { plan_id: 'team', tenants: 1, seats: 3, custom_priced: 0, revenue_usd: '87', llm_cost_usd: '30', margin_usd: '57', margin_ratio: '0.6552' },
        { plan_id: 'enterprise', tenants: 1, seats: 1, custom_priced: 1, revenue_usd: '0', llm_cost_usd: '1', margin_usd: '-1', margin_ratio: null },
        { plan_id: 'payg', tenants: 0, seats: 0, custom_priced: 0, revenue_usd: '0', llm_cost_usd: '0', margin_usd: '0', margin_ratio: null },
      ]);
      expect(j.summary).toEqual({ plan_id: 'total', tenants: 5, seats: 7, custom_priced: 1, revenue_usd: '101', llm_cost_usd: '34', margin_usd: '67', margin_ratio: '0.6634' });

      const csv = await m.app.inject({ method: 'GET', url: '/v1/billing/reports/margin?month=2026-03&format=csv', headers: fin });
      expect(csv.headers['content-type']).toContain('text/csv');
      expect(csv.body).toBe(
        [
          'plan_id,tenants,seats,custom_priced,revenue_usd,llm_cost_usd,margin_usd,margin_ratio',
          'free,1,1,0,0,0.4,-0.4,',
          'pro,2,2,0,14,2.6,11.4,0.8143',
          'team,1,3,0,87,30,57,0.6552',
          'enterprise,1,1,1,0,1,-1,',
          'payg,0,0,0,0,0,0,',
          'total,5,7,1,101,34,67,0.6634',
          '',
        ].join('\n'),
      );
    } finally {
      await m.close();
      await own.close();
    }
  });
});

describe('billing without Stripe or a vault master key', () => {
  it('starts; BYOK and Stripe routes answer 503 with a code saying what to configure', async () => {
    const bare = await billingFromConfig({ env: { FORGE_PLANS_FILE: 'config/plans.yaml' }, store, onError: (e) => storeErrors.push(e) });
    expect(bare.vault).toBeNull();
    expect(bare.stripe).toBeNull();
    const b = await appWith(bare);
    try {
      const admin = auth(b.key(['admin']));
      const save = await b.app.inject({ method: 'PUT', url: '/v1/billing/tenants/acme/users/u1/keys/openai', headers: admin, payload: { api_key: USER_KEY } });
      expect(save.statusCode).toBe(503);
      expect(save.json().error.code).toBe('FORGE_ERR_BYOK_NOT_CONFIGURED');
      expect(save.json().error.message).toContain('FORGE_VAULT_MASTER_KEY');
      const hook = await b.app.inject({ method: 'POST', url: '/v1/billing/stripe/webhook', headers: { 'content-type': 'application/json' }, payload: '{}' });
      expect(hook.statusCode).toBe(503);
      expect(hook.json().error.code).toBe('FORGE_ERR_STRIPE_NOT_CONFIGURED');
      // The rest works: a job on the platform key.
      const job = await b.app.inject({ method: 'POST', url: '/v1/billing/jobs', headers: admin, payload: { tenant_id: fresh('bare'), user_id: 'u1', execution_id: 'j', skill: 'classify', max_tokens: 10 } });
      expect(job.json()).toMatchObject({ decision: 'allow', key: { source: 'platform', reason: 'no_vault' } });
    } finally {
      await b.close();
      await bare.close();
    }
  });
});
