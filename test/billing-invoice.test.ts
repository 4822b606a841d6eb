import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Stripe from 'stripe';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { billingRoutes } from '../api/routes/billing.ts';
import { billingFromConfig, UsageBillingStore, UsageReporter, type BillingParts, type Invoice } from '../billing/index.ts';
import { openStore, type CostEvent, type Store } from '../store/index.ts';
import { costEvent, makeTestApi, type TestApi } from './helpers/api.ts';
import { StripeReceiver } from './helpers/stripe-receiver.ts';

// The "done when" of issue 16: an invoice for a month of mixed usage (tokens on several models, overage past a
// commitment, prepaid credits bought through Stripe Checkout, a premium skill) whose lines add up to its total
// exactly, reconciles with the cost log, and whose figures reach Stripe once.

const STRIPE_KEY = 'sk_test_forgeinvoice';
const WEBHOOK_SECRET = 'whsec_forgeinvoice';
const signer = new Stripe('sk_test_signer_only');
const M = 1_000_000;

let dir = '';
let store: Store;
let stripeApi: StripeReceiver;
let parts: BillingParts;
let t: TestApi;
const errors: unknown[] = [];

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'forge-invoice-'));
  stripeApi = await StripeReceiver.start(STRIPE_KEY);
  store = await openStore({ dataDir: join(dir, 'clickhouse'), onError: (e) => errors.push(e), writer: { flushIntervalMs: 10 } });
  parts = await billingFromConfig({
    env: { STRIPE_SECRET_KEY: STRIPE_KEY, STRIPE_WEBHOOK_SECRET: WEBHOOK_SECRET, FORGE_STRIPE_API_BASE_URL: stripeApi.url, FORGE_STRIPE_MAX_RETRIES: '0' },
    store,
    onError: (e) => errors.push(e),
  });
  const box: { t?: TestApi } = {};
  t = await makeTestApi({ parts: { plugins: [async (app) => app.register(billingRoutes, { ...parts, now: () => (box.t as TestApi).clock.now })] } });
  box.t = t;
}, 60_000);

afterAll(async () => {
  await t?.close();
  await parts?.close();
  await store?.close();
  await stripeApi?.close();
  rmSync(dir, { recursive: true, force: true });
  expect(errors).toEqual([]);
});

const auth = (key: string) => ({ authorization: `Bearer ${key}` });
const day = (d: number, h = 12) => Date.UTC(2026, 2, d, h);

function webhook(event: Record<string, unknown>) {
  const payload = JSON.stringify(event);
  const header = signer.webhooks.generateTestHeaderString({ payload, secret: WEBHOOK_SECRET, timestamp: Math.floor(t.clock.now / 1000) });
  return t.app.inject({ method: 'POST', url: '/v1/billing/stripe/webhook', headers: { 'content-type': 'application/json', 'stripe-signature': header }, payload });
}
const checkout = (eventId: string, sessionId: string, tenant: string, amountCents = 5000) => ({
  id: eventId, object: 'event', type: 'checkout.session.completed', created: Math.floor(t.clock.now / 1000),
  data: { object: { id: sessionId, object: 'checkout.session', payment_status: 'paid', currency: 'usd', amount_total: amountCents, metadata: { forge_tenant_id: tenant, forge_offer: 'usd50' } } },
});

describe('a month of mixed usage, invoiced', () => {
  const tenant = 'acme-invoice';
  const fin = () => auth(t.key(['finance']));
  const invoiceItems = () => stripeApi.byPath('/v1/invoiceitems').filter((r) => r.status === 200 && !r.replayed);

  it('is drafted from the cost log, finalized once, adds up to the micro-dollar, reconciles with the log and reaches Stripe once', async () => {
    // Pro through Stripe (the customer the invoice items go to), a 100K commitment from March for 12 months.
    const sub = await t.app.inject({ method: 'POST', url: `/v1/billing/tenants/${tenant}/subscription`, headers: fin(), payload: { plan_id: 'pro', email: 'billing@acme.test', request_id: 'r1' } });
    expect(sub.statusCode, sub.body).toBe(200);
    const c = await t.app.inject({ method: 'PUT', url: `/v1/billing/tenants/${tenant}/commitment`, headers: fin(), payload: { executions_per_month: 100_000, start_month: '2026-03', term_months: 12 } });
    expect(c.json()).toMatchObject({ executions_per_month: 100_000, discount_percent: 20, active: true });
    const short = await t.app.inject({ method: 'PUT', url: `/v1/billing/tenants/${tenant}/commitment`, headers: fin(), payload: { executions_per_month: 100_000, start_month: '2026-03', term_months: 11 } });
    expect(short.json().error).toMatchObject({ code: 'FORGE_ERR_VALIDATION', field: 'term_months' });
    const lower = await t.app.inject({ method: 'PUT', url: `/v1/billing/tenants/${tenant}/commitment`, headers: fin(), payload: { executions_per_month: 100_000 - 1, start_month: '2026-03', term_months: 12 } });
    expect(lower.statusCode).toBe(400);

    // 50 USD of prepaid credits with a 5 USD bonus, from Stripe Checkout: credited once however often it arrives.
    expect((await webhook(checkout('evt_cs_1', 'cs_test_1', tenant))).json()).toEqual({ received: true, handled: true, type: 'checkout.session.completed' });
    expect((await webhook(checkout('evt_cs_1', 'cs_test_1', tenant))).json()).toMatchObject({ handled: false, reason: 'duplicate' });
    expect((await webhook(checkout('evt_cs_1_resent', 'cs_test_1', tenant))).json()).toMatchObject({ handled: true });
    const wrongAmount = await webhook(checkout('evt_cs_2', 'cs_test_2', tenant, 4999));
    expect(wrongAmount.statusCode).toBe(400);
    const prepaid = await t.app.inject({ method: 'GET', url: `/v1/billing/tenants/${tenant}/prepaid`, headers: fin() });
    expect(prepaid.json()).toMatchObject({ balance_usd: '55' });
    expect(prepaid.json().entries.map((e: { kind: string; amount_usd: string }) => [e.kind, e.amount_usd])).toEqual([['purchase', '50'], ['bonus', '5']]);

    // The month's cost log: tokens on several models, a failed-over task, BYOK, premium skills; plus 99,998 bare executions.
    const ev = (at: number, over: Partial<CostEvent>): CostEvent => costEvent({ tenantId: tenant, totalMicros: 1, eventTime: at, ...over });
    await store.writer.write([
      ev(day(3), { userId: 'u1', agentId: 'agent-a', skillId: 'code', keySource: 'platform', llmTokens: [{ model: 'claude-sonnet', inputTokens: 10_000, outputTokens: 2_000 }] }),
      ev(day(3, 13), { userId: 'u2', agentId: 'agent-b', skillId: 'summarize', keySource: 'platform', llmTokens: [{ model: 'gpt-4o-mini', inputTokens: 100_000, outputTokens: 10_000 }] }),
      // Failed over from Sonnet to Groq: priced at the model that answered.
      ev(day(4), { userId: 'u1', agentId: 'agent-a', keySource: 'platform', llmTokens: [{ model: 'claude-sonnet', inputTokens: 0, outputTokens: 0 }, { model: 'groq-llama', inputTokens: M, outputTokens: 500_000 }] }),
      ev(day(5), { userId: 'u2', agentId: 'agent-b', keySource: 'byok', llmTokens: [{ model: 'gpt-4o', inputTokens: 50_000, outputTokens: 0 }] }),
      ev(day(31, 23), { userId: 'u1', agentId: 'agent-a', llmTokens: [{ model: 'claude-haiku', inputTokens: 3, outputTokens: 0 }] }),
      // The next month's first event is not in March.
      ev(Date.UTC(2026, 3, 1), { agentId: 'agent-a', llmTokens: [{ model: 'gpt-4o', inputTokens: M, outputTokens: 0 }] }),
    ]);
    await store.client.command({
      query: `INSERT INTO ${store.database}.cost_events (tenant_id, event_id, run_id, event_time, ingest_time)
              SELECT {t:String}, concat('bulk-', toString(number)), 'bulk', toDateTime64('2026-03-10 00:00:00', 3, 'UTC') + number, now64(3) FROM numbers(99998)`,
      query_params: { t: tenant },
      clickhouse_settings: { insert_deduplication_token: randomUUID() },
    });

    const draft = await t.app.inject({ method: 'GET', url: `/v1/billing/tenants/${tenant}/invoices/2026-03`, headers: fin() });
    expect(draft.statusCode, draft.body).toBe(200);
    expect(draft.json()).toMatchObject({ final: false, executions: 100_003 });

    // April: the month is closed. The first Stripe call fails: the finalize answers 502 and a retry completes it.
    t.clock.now = Date.parse('2026-04-01T01:00:00Z');
    stripeApi.failNext(1, 500);
    const failed = await t.app.inject({ method: 'POST', url: `/v1/billing/tenants/${tenant}/invoices/2026-03/finalize`, headers: fin() });
    expect(failed.statusCode).toBe(502);
    const done = await t.app.inject({ method: 'POST', url: `/v1/billing/tenants/${tenant}/invoices/2026-03/finalize`, headers: fin() });
    expect(done.statusCode, done.body).toBe(200);
    const inv = done.json().invoice;
    const amounts = Object.fromEntries(inv.lines.map((l: { id: string; amount_micros: number }) => [l.id, l.amount_micros]));
    expect(amounts).toEqual({
      subscription: 9 * M,
      'tokens:claude-haiku': 2, // 3 x 0.50 per 1M = 1.5 micros, half-even
      'tokens:claude-sonnet': 120_000, // 10K x 6 + 2K x 30 per 1M
      'tokens:gpt-4o-mini': 42_000, // 100K x 0.30 + 10K x 1.20 per 1M
      'tokens:groq-llama': 180_000, // 1M x 0.10 + 500K x 0.16 per 1M
      'byok-tokens:gpt-4o': 0, // tracked, not charged
      commitment: 800 * M, // 100K x 0.01 less 20 %
      'commitment-overage': 30_000, // 3 past the commitment x 0.01
      'premium:summarize': 50_000, // the creator's 0.05 per execution
      credits: -55 * M,
    });
    const subtotal = 9 * M + 2 + 120_000 + 42_000 + 180_000 + 800 * M + 30_000 + 50_000;
    expect(inv).toMatchObject({ final: true, executions: 100_003, subtotal_usd: '809.422002', credits_applied_usd: '55', total_micros: subtotal - 55 * M, total_usd: '754.422002' });
    expect(inv.lines.reduce((s: number, l: { amount_micros: number }) => s + l.amount_micros, 0)).toBe(inv.total_micros);
    expect(inv.by_agent.map((d: { key: string; executions: number; price_usd: string }) => [d.key, d.executions, d.price_usd])).toEqual([
      ['(none)', 99_998, '0'],
      ['agent-a', 3, '0.300002'],
      ['agent-b', 2, '0.042'],
    ]);
    expect(inv.by_day.map((d: { key: string }) => d.key)).toEqual(['2026-03-03', '2026-03-04', '2026-03-05', '2026-03-10', '2026-03-11', '2026-03-31']);

    // Reconciled with the cost log: executions and tokens per model, straight from the log.
    const rs = await store.client.query({
      query: `SELECT count() AS n FROM ${store.database}.cost_events FINAL WHERE tenant_id = {t:String} AND event_time >= toDateTime64('2026-03-01 00:00:00', 3, 'UTC') AND event_time < toDateTime64('2026-04-01 00:00:00', 3, 'UTC')`,
      query_params: { t: tenant }, format: 'JSONEachRow',
    });
    expect(Number((await rs.json<{ n: string }>())[0]?.n)).toBe(inv.executions);
    const tok = await store.client.query({
      query: `SELECT m, toString(sum(i)) AS i, toString(sum(o)) AS o FROM ${store.database}.cost_events FINAL ARRAY JOIN llm_models AS m, llm_input_tokens AS i, llm_output_tokens AS o
              WHERE tenant_id = {t:String} AND key_source != 'byok' AND event_time >= toDateTime64('2026-03-01 00:00:00', 3, 'UTC') AND event_time < toDateTime64('2026-04-01 00:00:00', 3, 'UTC') GROUP BY m ORDER BY m`,
      query_params: { t: tenant }, format: 'JSONEachRow',
    });
    const fromLog = (await tok.json<{ m: string; i: string; o: string }>()).map((r) => [r.m, Number(r.i), Number(r.o)]);
    const fromInvoice = inv.lines.filter((l: { kind: string }) => l.kind === 'tokens').map((l: { model: string; input_tokens: number; output_tokens: number }) => [l.model, l.input_tokens, l.output_tokens]);
    expect(fromInvoice).toEqual(fromLog);

    // Stripe received each non-zero line once, to the micro-dollar, well-formed.
    expect(stripeApi.problems()).toEqual([]);
    const items = invoiceItems();
    expect(items).toHaveLength(9);
    expect(new Set(items.map((r) => r.idempotencyKey)).size).toBe(9);
    const micros = (cents: string) => Math.round(Number(cents) * 10_000); // 4 decimals of a cent at most: exact here
    expect(items.reduce((s, r) => s + micros(r.form.unit_amount_decimal as string), 0)).toBe(inv.total_micros);
    expect(items.every((r) => r.form.customer === sub.json().customer_id && r.form.currency === 'usd' && r.form.quantity === '1')).toBe(true);

    // Finalizing again changes nothing and sends nothing; the prepaid credits were taken once.
    const again = await t.app.inject({ method: 'POST', url: `/v1/billing/tenants/${tenant}/invoices/2026-03/finalize`, headers: fin() });
    expect(again.json()).toMatchObject({ invoice: { total_micros: inv.total_micros }, stripe: { sent: 0, skipped: 9 } });
    expect(invoiceItems()).toHaveLength(9);
    expect((await t.app.inject({ method: 'GET', url: `/v1/billing/tenants/${tenant}/prepaid`, headers: fin() })).json()).toMatchObject({ balance_usd: '0' });

    // CSV and printable HTML carry the same figures.
    const csv = await t.app.inject({ method: 'GET', url: `/v1/billing/tenants/${tenant}/invoices/2026-03?format=csv`, headers: fin() });
    expect(csv.body).toContain('total,,,,,754.422002');
    expect(csv.body).toContain('tokens:groq-llama,tokens,groq-llama tokens,1500000,,0.18');
    const html = await t.app.inject({ method: 'GET', url: `/v1/billing/tenants/${tenant}/invoices/2026-03?format=html`, headers: fin() });
    expect(html.headers['content-type']).toContain('text/html');
    expect(html.body).toContain('<th>754.422002</th>');

    // The creators' statements: 30 % of the Sonnet revenue of "code", and the fixed price of "summarize".
    const st = await t.app.inject({ method: 'GET', url: '/v1/billing/creators/statements?month=2026-03', headers: fin() });
    expect(st.json().statements.map((s: { creator: string; earned_usd: string }) => [s.creator, s.earned_usd])).toEqual([['acct_1CreatorCode', '0.036'], ['acct_1CreatorSummarize', '0.05']]);
  });

  it('routes with a priced fallback chain; keeps tenants apart and validates: a team key sees only its own invoice; a bad month names the field', async () => {
    const route = await t.app.inject({ method: 'GET', url: `/v1/billing/tenants/${tenant}/route?skill=code`, headers: auth(t.key(['runner'], tenant)) });
    expect(route.json().fallback.map((s: { model: string; price_input_usd: string }) => [s.model, s.price_input_usd])).toEqual([
      ['ollama-local', '0.02'], ['deepseek-r1', '0.05'], ['groq-llama', '0.1'], ['gpt-4o', '5'], ['claude-sonnet', '6'],
    ]);
    const other = await t.app.inject({ method: 'GET', url: `/v1/billing/tenants/${tenant}/invoices/2026-03`, headers: auth(t.key(['finance'], 'someone-else')) });
    expect(other.statusCode).toBe(403);
    const bad = await t.app.inject({ method: 'GET', url: `/v1/billing/tenants/${tenant}/invoices/2026-13`, headers: fin() });
    expect(bad.json().error).toMatchObject({ code: 'FORGE_ERR_VALIDATION' });
    expect(bad.json().error.field).toContain('month');
    const own = await t.app.inject({ method: 'POST', url: `/v1/billing/tenants/${tenant}/invoices/2026-03/finalize`, headers: auth(t.key(['finance'], tenant)) });
    expect(own.json().error).toMatchObject({ code: 'FORGE_ERR_FORBIDDEN_TENANT' });
    const open = await t.app.inject({ method: 'POST', url: `/v1/billing/tenants/${tenant}/invoices/2026-04/finalize`, headers: fin() });
    expect(open.statusCode).toBe(409);
  });
});

describe('Pay As You Go', () => {
  it('tells a month that would have cost less on Pro, and moves the team to Pro only if it opted in', async () => {
    const fin = auth(t.key(['finance']));
    for (const [tenant, optIn] of [['payg-in', true], ['payg-out', false]] as const) {
      expect((await t.app.inject({ method: 'PUT', url: `/v1/billing/tenants/${tenant}/account`, headers: fin, payload: { plan_id: 'payg' } })).statusCode).toBe(200);
      expect((await t.app.inject({ method: 'PUT', url: `/v1/billing/tenants/${tenant}/overage`, headers: fin, payload: { overage_opt_in: optIn } })).statusCode).toBe(200);
      // 901 executions in February: 9.01 USD on Pay As You Go, 9 USD on Pro.
      await store.client.command({
        query: `INSERT INTO ${store.database}.cost_events (tenant_id, event_id, run_id, event_time, ingest_time)
                SELECT {t:String}, concat('pg-', toString(number)), 'bulk', toDateTime64('2026-02-10 00:00:00', 3, 'UTC') + number, now64(3) FROM numbers(901)`,
        query_params: { t: tenant },
        // Its own token: the embedded connection keeps the settings of earlier statements (the writer's token).
        clickhouse_settings: { insert_deduplication_token: randomUUID() },
      });
      const done = await t.app.inject({ method: 'POST', url: `/v1/billing/tenants/${tenant}/invoices/2026-02/finalize`, headers: fin });
      expect(done.json().invoice).toMatchObject({ plan_id: 'payg', total_usd: '9.01', notices: [{ code: 'payg_more_than_pro' }] });
      const acct = await t.app.inject({ method: 'GET', url: `/v1/billing/tenants/${tenant}/account`, headers: fin });
      expect(acct.json().plan_id).toBe(optIn ? 'pro' : 'payg');
    }
  });
});

describe('the reporter loop', () => {
  it('finalizes each closed month and reports its invoice lines to Stripe once, however often it runs', async () => {
    const tenant = 'acme-loop';
    const sub = await t.app.inject({ method: 'POST', url: `/v1/billing/tenants/${tenant}/subscription`, headers: auth(t.key(['finance'])), payload: { plan_id: 'pro', email: 'loop@acme.test', request_id: 'r1' } });
    expect(sub.statusCode).toBe(200);
    await store.writer.write([costEvent({ tenantId: tenant, totalMicros: 1, eventTime: Date.UTC(2026, 3, 15), agentId: 'a', keySource: 'platform', llmTokens: [{ model: 'gpt-4o-mini', inputTokens: M, outputTokens: 0 }] })]);
    const mine = () => stripeApi.byPath('/v1/invoiceitems').filter((r) => r.status === 200 && !r.replayed && r.form['metadata[tenant_id]'] === tenant);
    const may = Date.parse('2026-05-01T02:00:00Z');
    await parts.reporter!.runOnce(may);
    expect(mine().map((r) => [r.form['metadata[line_id]'], r.form.unit_amount_decimal])).toEqual([['subscription', '900'], ['tokens:gpt-4o-mini', '30']]);
    await parts.reporter!.runOnce(may + 3_600_000);
    // A restarted process (a new reporter over the same store) sends nothing again either.
    await new UsageReporter({ stripe: parts.stripe!, accounts: parts.accounts, usage: parts.usage, invoices: parts.usageBilling, onError: (e) => errors.push(e) }).runOnce(may + 7_200_000);
    expect(mine()).toHaveLength(2);
    expect(stripeApi.problems()).toEqual([]);
  });
});

describe('creator payouts', () => {
  it('carries a 24.99 USD balance over, pays 25 USD the next month by Stripe Connect transfer, and never twice', async () => {
    const us = new UsageBillingStore(store.client, store.database);
    const earning = (month: string, micros: number): Invoice =>
      ({ tenantId: 'acme-invoice', month, from: 0, to: 0, planId: 'pro', executions: 0, lines: [], subtotalMicros: 0, creditsAppliedMicros: 0, totalMicros: 0, byAgent: [], byDay: [], unpriced: [], notices: [],
        creatorEarnings: [{ skill: 'code', creator: 'acct_1Payee', mode: 'share', executions: 1, revenueMicros: micros, creatorMicros: micros }] });
    await us.saveInvoice(earning('2026-01', 24_990_000), t.clock.now);
    await us.saveInvoice(earning('2026-02', 10_000), t.clock.now);
    const transfers = () => stripeApi.byPath('/v1/transfers').filter((r) => r.status === 200 && !r.replayed);

    const jan = await t.app.inject({ method: 'POST', url: '/v1/billing/creators/payouts', headers: auth(t.key(['finance'])), payload: { month: '2026-01' } });
    expect(jan.json().payouts.find((p: { creator: string }) => p.creator === 'acct_1Payee')).toMatchObject({ earned_usd: '24.99', paid_usd: '0', carry_out_usd: '24.99', transfer_id: '' });
    expect(transfers()).toHaveLength(0);

    for (let i = 0; i < 2; i++) {
      const feb = await t.app.inject({ method: 'POST', url: '/v1/billing/creators/payouts', headers: auth(t.key(['finance'])), payload: { month: '2026-02' } });
      expect(feb.json().payouts.find((p: { creator: string }) => p.creator === 'acct_1Payee')).toMatchObject({ earned_usd: '0.01', carried_in_usd: '24.99', paid_usd: '25', carry_out_usd: '0' });
    }
    expect(transfers()).toHaveLength(1);
    expect(transfers()[0]?.form).toMatchObject({ amount: '2500', currency: 'usd', destination: 'acct_1Payee' });
    expect(stripeApi.problems()).toEqual([]);
  });
});
