import Stripe from 'stripe';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadPlans, MemoryAccountStore, MemoryUsageSource, StripeBilling, UsageReporter, type StripeSettings } from '../billing/index.ts';
import { StripeReceiver } from './helpers/stripe-receiver.ts';

const catalog = loadPlans('config/plans.yaml');
const SECRET_KEY = 'sk_test_forge123';
const WEBHOOK_SECRET = 'whsec_forgetestsecret';
const NOW = Date.UTC(2025, 10, 15, 12);
const signer = new Stripe('sk_test_signer_only');

let receiver: StripeReceiver;
beforeAll(async () => {
  receiver = await StripeReceiver.start(SECRET_KEY);
});
afterAll(async () => {
  await receiver.close();
});

function settings(extra: Partial<StripeSettings> = {}): StripeSettings {
  return { secretKey: SECRET_KEY, webhookSecret: WEBHOOK_SECRET, apiBaseUrl: receiver.url, meterEventName: 'forge_executions', maxNetworkRetries: 2, ...extra };
}

let n = 0;
async function subscribed(planId = 'pro', byok = false, seats = 1) {
  const tenantId = `t${++n}-${Date.now()}`;
  const accounts = new MemoryAccountStore();
  const billing = new StripeBilling(settings(), catalog, accounts);
  await billing.ensureCustomer({ tenantId, email: `${tenantId}@example.com`, now: NOW });
  const acct = await billing.subscribe({ tenantId, planId, byok, seats, requestId: 'r1', now: NOW });
  return { tenantId, accounts, billing, acct };
}

function signed(event: Record<string, unknown>, secret = WEBHOOK_SECRET, timestamp = Math.floor(NOW / 1000)): { payload: string; header: string } {
  const payload = JSON.stringify(event);
  return { payload, header: signer.webhooks.generateTestHeaderString({ payload, secret, timestamp }) };
}

describe('Stripe API calls (loopback receiver)', () => {
  it('creates a customer once and subscribes at the standard or BYOK price, per seat for Team', async () => {
    const before = receiver.requests.length;
    const { tenantId, billing, acct } = await subscribed('team', true, 3);
    expect(acct).toMatchObject({ planId: 'team', byok: true, seats: 3, status: 'active' });
    expect(acct.customerId).toMatch(/^cus_/);
    await billing.ensureCustomer({ tenantId, email: `${tenantId}@example.com`, now: NOW }); // no second create
    const mine = receiver.requests.slice(before);
    expect(mine.map((r) => r.path)).toEqual(['/v1/customers', '/v1/subscriptions']);
    expect(mine[0]?.form).toMatchObject({ email: `${tenantId}@example.com`, 'metadata[tenant_id]': tenantId });
    expect(mine[1]?.form).toMatchObject({
      customer: acct.customerId,
      'items[0][price]': 'price_team_byok_seat_monthly',
      'items[0][quantity]': '3',
      'metadata[plan_id]': 'team',
      'metadata[byok]': 'true',
    });
    expect(mine.every((r) => typeof r.idempotencyKey === 'string' && r.idempotencyKey.startsWith('forge-'))).toBe(true);

    const pro = await subscribed('pro', false);
    expect(receiver.requests.at(-1)?.form['items[0][price]']).toBe('price_pro_monthly');
    expect(pro.acct.seats).toBe(1);
    expect(receiver.problems()).toEqual([]);
  });

  it('refuses plans without a Stripe price (Free, Enterprise) and names the field', async () => {
    const { billing, tenantId } = await subscribed('pro');
    await expect(billing.subscribe({ tenantId, planId: 'free', byok: false, requestId: 'r2', now: NOW })).rejects.toMatchObject({ field: 'planId' });
    await expect(billing.subscribe({ tenantId, planId: 'gold', byok: false, requestId: 'r3', now: NOW })).rejects.toMatchObject({ code: 'FORGE_ERR_BILLING_UNKNOWN_PLAN' });
  });

  it('reports usage as a meter event; after a 500 stripe-node retries with the same Idempotency-Key', async () => {
    const { tenantId, billing, acct } = await subscribed('pro');
    receiver.failNext(1, 500);
    const before = receiver.requests.length;
    const r = await billing.reportUsage({ tenantId, usageId: '2025-11-batch-7', value: 42, at: NOW });
    const calls = receiver.requests.slice(before);
    expect(calls.map((c) => [c.path, c.status])).toEqual([
      ['/v1/billing/meter_events', 500],
      ['/v1/billing/meter_events', 200],
    ]);
    expect(calls[0]?.idempotencyKey).toBeDefined();
    expect(calls[1]?.idempotencyKey).toBe(calls[0]?.idempotencyKey);
    expect(calls[1]?.idempotencyKey).toBe(r.identifier);
    expect(calls[1]?.form).toEqual({
      event_name: 'forge_executions',
      'payload[stripe_customer_id]': acct.customerId,
      'payload[value]': '42',
      identifier: r.identifier,
      timestamp: String(Math.floor(NOW / 1000)),
    });
    expect(receiver.problems()).toEqual([]);
  });

  it('when every retry fails, reporting the same usage later sends the same key and is counted once', async () => {
    const { tenantId, billing } = await subscribed('pro');
    const before = receiver.requests.length;
    receiver.failNext(3, 500); // 1 try + 2 retries
    await expect(billing.reportUsage({ tenantId, usageId: 'exec-99', value: 1, at: NOW })).rejects.toMatchObject({ code: 'FORGE_ERR_STRIPE_API' });
    await billing.reportUsage({ tenantId, usageId: 'exec-99', value: 1, at: NOW }); // the caller's retry
    await billing.reportUsage({ tenantId, usageId: 'exec-99', value: 1, at: NOW }); // a duplicate report
    const calls = receiver.requests.slice(before);
    expect(calls.map((c) => c.status)).toEqual([500, 500, 500, 200, 200]);
    expect(new Set(calls.map((c) => c.idempotencyKey)).size).toBe(1);
    expect(calls.filter((c) => c.status === 200 && !c.replayed)).toHaveLength(1); // Stripe recorded it once
    expect(receiver.problems()).toEqual([]);
  });
});

describe('Stripe webhooks', () => {
  it('payment failed -> past_due, payment succeeded -> active, subscription updated -> plan, seats, BYOK', async () => {
    const { tenantId, billing, accounts, acct } = await subscribed('pro');
    const customer = acct.customerId as string;
    const failed = signed({ id: 'evt_1', object: 'event', type: 'invoice.payment_failed', created: 1000, data: { object: { id: 'in_1', object: 'invoice', customer } } });
    expect(await billing.handleWebhook(failed.payload, failed.header, NOW)).toMatchObject({ handled: true, status: 'past_due', previous: { status: 'active' } });
    expect((await accounts.get(tenantId))?.status).toBe('past_due');

    const ok = signed({ id: 'evt_2', object: 'event', type: 'invoice.payment_succeeded', created: 1001, data: { object: { id: 'in_2', object: 'invoice', customer } } });
    expect(await billing.handleWebhook(Buffer.from(ok.payload), ok.header, NOW)).toMatchObject({ handled: true, status: 'active' });

    const upd = signed({
      id: 'evt_3',
      object: 'event',
      type: 'customer.subscription.updated',
      created: 1002,
      data: { object: { id: 'sub_9', object: 'subscription', customer, status: 'active', items: { object: 'list', data: [{ price: { id: 'price_team_byok_seat_monthly' }, quantity: 4 }] } } },
    });
    expect(await billing.handleWebhook(upd.payload, upd.header, NOW)).toMatchObject({ handled: true, planId: 'team', previous: { planId: 'pro' } });
    expect(await accounts.get(tenantId)).toMatchObject({ planId: 'team', byok: true, seats: 4, subscriptionId: 'sub_9' });

    // the same event delivered twice, and an older event arriving late, change nothing
    expect(await billing.handleWebhook(upd.payload, upd.header, NOW)).toMatchObject({ handled: false, reason: 'duplicate' });
    const late = signed({ id: 'evt_0', object: 'event', type: 'invoice.payment_failed', created: 999, data: { object: { customer } } });
    expect(await billing.handleWebhook(late.payload, late.header, NOW)).toMatchObject({ handled: false, reason: 'stale' });
    expect((await accounts.get(tenantId))?.status).toBe('active');
  });

  it('a forged webhook (wrong secret, changed body, no header, old timestamp) is rejected and changes nothing', async () => {
    const { tenantId, billing, accounts, acct } = await subscribed('pro');
    const event = { id: 'evt_f', object: 'event', type: 'invoice.payment_failed', created: 2000, data: { object: { customer: acct.customerId } } };
    const forged = signed(event, 'whsec_attacker');
    await expect(billing.handleWebhook(forged.payload, forged.header, NOW)).rejects.toMatchObject({ code: 'FORGE_ERR_STRIPE_WEBHOOK_SIGNATURE', statusCode: 400 });
    const good = signed(event);
    const tampered = good.payload.replace('invoice.payment_failed', 'invoice.payment_succeeded');
    await expect(billing.handleWebhook(tampered, good.header, NOW)).rejects.toMatchObject({ code: 'FORGE_ERR_STRIPE_WEBHOOK_SIGNATURE' });
    await expect(billing.handleWebhook(good.payload, undefined, NOW)).rejects.toMatchObject({ code: 'FORGE_ERR_STRIPE_WEBHOOK_SIGNATURE' });
    const old = signed(event, WEBHOOK_SECRET, Math.floor(NOW / 1000) - 3600);
    await expect(billing.handleWebhook(old.payload, old.header, NOW)).rejects.toMatchObject({ code: 'FORGE_ERR_STRIPE_WEBHOOK_SIGNATURE' });
    expect((await accounts.get(tenantId))?.status).toBe('active');
    // and the genuine one is accepted
    expect(await billing.handleWebhook(good.payload, good.header, NOW)).toMatchObject({ handled: true, status: 'past_due' });
  });

  it('ignores other event types and unknown customers', async () => {
    const { billing } = await subscribed('pro');
    const other = signed({ id: 'evt_o', object: 'event', type: 'charge.refunded', created: 1, data: { object: {} } });
    expect(await billing.handleWebhook(other.payload, other.header, NOW)).toMatchObject({ handled: false, reason: 'ignored_type' });
    const stranger = signed({ id: 'evt_s', object: 'event', type: 'invoice.payment_failed', created: 1, data: { object: { customer: 'cus_unknown' } } });
    expect(await billing.handleWebhook(stranger.payload, stranger.header, NOW)).toMatchObject({ handled: false, reason: 'unknown_customer' });
  });
});

describe('UsageReporter', () => {
  it('reports each closed UTC day once per team, with an identifier stable across reporter restarts', async () => {
    const { tenantId, billing, accounts, acct } = await subscribed('pro');
    const usage = new MemoryUsageSource();
    const day14 = Date.UTC(2025, 10, 14);
    for (let i = 0; i < 7; i++) usage.record({ executionId: `d14-${i}`, tenantId, userId: 'u', at: day14 + i * 1000, llmMicros: 0, byok: false });
    usage.record({ executionId: 'd15', tenantId, userId: 'u', at: NOW, llmMicros: 0, byok: false }); // today: not yet
    const errors: unknown[] = [];
    const before = receiver.requests.length;
    receiver.failNext(3, 500); // the first pass fails after stripe-node's retries
    const r1 = new UsageReporter({ stripe: billing, accounts, usage, onError: (e) => errors.push(e), lookbackDays: 1 });
    expect(await r1.runOnce(NOW)).toEqual({ reported: 0, failed: 1 });
    expect(await r1.runOnce(NOW)).toEqual({ reported: 1, failed: 0 });
    expect(await r1.runOnce(NOW)).toEqual({ reported: 0, failed: 0 }); // already done
    const r2 = new UsageReporter({ stripe: billing, accounts, usage, onError: (e) => errors.push(e), lookbackDays: 1 }); // a restart
    await r2.runOnce(NOW);
    const calls = receiver.requests.slice(before).filter((c) => c.path === '/v1/billing/meter_events');
    expect(calls.map((c) => c.status)).toEqual([500, 500, 500, 200, 200]);
    expect(new Set(calls.map((c) => c.idempotencyKey))).toEqual(new Set([`forge-usage-${tenantId}-executions-2025-11-14`]));
    expect(calls.filter((c) => c.status === 200 && !c.replayed)).toHaveLength(1);
    expect(calls[3]?.form).toMatchObject({ 'payload[value]': '7', 'payload[stripe_customer_id]': acct.customerId });
    expect(errors).toHaveLength(1);
    expect(receiver.problems()).toEqual([]);
  });
});

describe('the BYOK price switch', () => {
  it('changes the price of the existing subscription (no second subscription, no double billing)', async () => {
    const { tenantId, billing, acct } = await subscribed('pro', false);
    const before = receiver.requests.length;
    const switched = await billing.subscribe({ tenantId, planId: 'pro', byok: true, requestId: 'r-byok', now: NOW + 1 });
    expect(switched).toMatchObject({ subscriptionId: acct.subscriptionId, byok: true, planId: 'pro' });
    const calls = receiver.requests.slice(before);
    expect(calls.map((c) => `${c.method} ${c.path}`)).toEqual([`GET /v1/subscriptions/${acct.subscriptionId}`, `POST /v1/subscriptions/${acct.subscriptionId}`]);
    expect(calls[1]?.form).toMatchObject({ 'items[0][price]': 'price_pro_byok_monthly', 'items[0][quantity]': '1', proration_behavior: 'create_prorations', 'metadata[byok]': 'true' });
    expect(receiver.byPath('/v1/subscriptions').filter((r) => r.form.customer === acct.customerId)).toHaveLength(1);
    const sub = receiver.subscriptions.get(acct.subscriptionId as string) as { items: { data: Array<{ price: { id: string } }> } };
    expect(sub.items.data.map((i) => i.price.id)).toEqual(['price_pro_byok_monthly']);
    // And back: the same one subscription again.
    await billing.subscribe({ tenantId, planId: 'pro', byok: false, requestId: 'r-std', now: NOW + 2 });
    expect(sub === receiver.subscriptions.get(acct.subscriptionId as string)).toBe(false);
    expect((receiver.subscriptions.get(acct.subscriptionId as string) as typeof sub).items.data.map((i) => i.price.id)).toEqual(['price_pro_monthly']);
    expect(receiver.problems()).toEqual([]);
  });
});
