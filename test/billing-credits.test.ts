import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { createClient, type ClickHouseClient } from '@clickhouse/client';
import { createChdbConnection } from 'chdb/connection';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ACCOUNTS,
  BillingError,
  ClickHouseCreditEntryStore,
  CreditLedger,
  creditsFor,
  loadPlans,
  MemoryCreditEntryStore,
  migrateBilling,
  RedisCreditLedger,
  type CreditEntryStore,
  type CreditLedgerApi,
  type LedgerEntry,
} from '../billing/index.ts';
import { Redis } from 'ioredis';
import { freshPrefix, startRedis, type RedisServer } from './helpers/redis.ts';

const catalog = loadPlans('config/plans.yaml');
const NOW = Date.UTC(2025, 10, 15, 12);

function sumsPerTx(entries: LedgerEntry[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const e of entries) m.set(`${e.txId}|${e.unit}`, (m.get(`${e.txId}|${e.unit}`) ?? 0) + e.amount);
  return m;
}

describe('credit prices', () => {
  it('1 credit fast, 5 standard, 25 heavy, 2 per sandbox try', () => {
    expect(creditsFor(catalog, { modelCalls: { fast: 1 } })).toBe(1);
    expect(creditsFor(catalog, { modelCalls: { standard: 1 } })).toBe(5);
    expect(creditsFor(catalog, { modelCalls: { heavy: 1 } })).toBe(25);
    expect(creditsFor(catalog, { modelCalls: { fast: 2, heavy: 1 }, sandboxTries: 3 })).toBe(2 + 25 + 6);
  });
});

/** A ledger implementation under test: `fresh()` is a new instance (a restart, another process) over the same data. */
interface Harness {
  fresh(): CreditLedgerApi;
  entries(owner: string): Promise<LedgerEntry[]>;
}

function storeHarness(store: CreditEntryStore): Harness {
  return { fresh: () => new CreditLedger(store), entries: (o) => store.load(o) };
}

async function unitTotals(h: Harness, owner: string): Promise<Record<string, number>> {
  const t: Record<string, number> = { credit: 0, run: 0 };
  for (const e of await h.entries(owner)) t[e.unit] = (t[e.unit] ?? 0) + e.amount;
  return t;
}

/** One contract suite, run once per implementation. */
function ledgerSuite(name: string, make: () => Promise<Harness>) {
  describe(`credit ledger (${name})`, () => {
    it('purchase, hold, settle with refund; balance = sum of entries; every tx sums to zero', async () => {
      const h = await make();
      const ledger = h.fresh();
      const owner = `t-${randomUUID().slice(0, 8)}`;
      const pack = catalog.credits.packs.starter;
      expect(await ledger.purchase(owner, 'pay_1', pack?.credits ?? 0, NOW, 'starter')).toEqual({ available: 1100, replay: false });
      expect(await ledger.purchase(owner, 'pay_1', 1100, NOW)).toEqual({ available: 1100, replay: true });
      const held = await ledger.hold({ owner, holdId: 'job-1', credits: 25, now: NOW });
      expect(held).toMatchObject({ ok: true, unit: 'credit', amount: 25, available: 1075 });
      expect(await ledger.balance(owner, NOW)).toMatchObject({ available: 1075, held: 25, openHolds: 1 });
      // Another process (a fresh ledger over the same store) sees the open hold.
      expect(await h.fresh().openHold(owner, 'job-1')).toEqual({ unit: 'credit', amount: 25, at: NOW });
      expect(await ledger.openHold(owner, 'job-9')).toBeUndefined();
      const s = await ledger.settle(owner, 'job-1', 5, NOW + 1);
      expect(await ledger.openHold(owner, 'job-1')).toBeUndefined();
      expect(s).toMatchObject({ ok: true, charged: 5, refunded: 20, shortfall: 0, available: 1095 });
      expect(await ledger.settle(owner, 'job-1', 5, NOW + 2)).toMatchObject({ ok: false, reason: 'already_closed' });
      await ledger.hold({ owner, holdId: 'job-2', credits: 5, now: NOW });
      expect(await ledger.release(owner, 'job-2', NOW)).toMatchObject({ ok: true, refunded: 5, available: 1095 });

      // a fresh ledger over the same store rebuilds the same state from the entries
      const again = h.fresh();
      expect(await again.balance(owner, NOW)).toMatchObject({ available: 1095, held: 0, openHolds: 0 });
      const entries = await h.entries(owner);
      expect([...sumsPerTx(entries).values()].every((v) => v === 0)).toBe(true);
      const available = entries.filter((e) => e.account === ACCOUNTS.available).reduce((a, e) => a + e.amount, 0);
      expect(available).toBe(1095);
      expect(await unitTotals(h, owner)).toEqual({ credit: 0, run: 0 });
    });

    it('an open hold survives a restart and can be settled after it', async () => {
      const h = await make();
      const owner = `t-${randomUUID().slice(0, 8)}`;
      const l1 = h.fresh();
      await l1.grant(owner, 'promo', 100, NOW);
      await l1.hold({ owner, holdId: 'job-x', credits: 30, now: NOW });
      const l2 = h.fresh();
      expect(await l2.balance(owner, NOW)).toMatchObject({ available: 70, held: 30, openHolds: 1 });
      expect(await l2.settle(owner, 'job-x', 40, NOW)).toMatchObject({ ok: true, charged: 40, shortfall: 0, available: 60 });
    });

    it('settle past the hold takes from the balance but never below zero', async () => {
      const h = await make();
      const owner = `t-${randomUUID().slice(0, 8)}`;
      const ledger = h.fresh();
      await ledger.grant(owner, 'g', 10, NOW);
      await ledger.hold({ owner, holdId: 'j', credits: 6, now: NOW });
      expect(await ledger.settle(owner, 'j', 25, NOW)).toMatchObject({ ok: true, charged: 10, refunded: 0, shortfall: 15, available: 0 });
      expect(await ledger.hold({ owner, holdId: 'k', credits: 1, now: NOW })).toMatchObject({ ok: false, reason: 'insufficient_credits', available: 0 });
    });

    it('free monthly runs are used before credits and renew with the UTC month', async () => {
      const h = await make();
      const owner = `t-${randomUUID().slice(0, 8)}`;
      const ledger = h.fresh();
      const r1 = await ledger.hold({ owner, holdId: 'f1', credits: 25, freeMonthlyRuns: 2, now: NOW });
      const r2 = await ledger.hold({ owner, holdId: 'f2', credits: 25, freeMonthlyRuns: 2, now: NOW });
      expect([r1, r2].map((r) => r.ok && r.unit)).toEqual(['run', 'run']);
      expect(await ledger.hold({ owner, holdId: 'f3', credits: 25, freeMonthlyRuns: 2, now: NOW })).toMatchObject({ ok: false, reason: 'insufficient_credits' });
      await ledger.release(owner, 'f2', NOW);
      expect(await ledger.balance(owner, NOW)).toMatchObject({ freeRunsLeft: 1 });
      await ledger.settle(owner, 'f1', 25, NOW);
      const dec = Date.UTC(2025, 11, 1);
      expect(await ledger.balance(owner, dec)).toMatchObject({ freeRunsLeft: 0 });
      expect(await ledger.hold({ owner, holdId: 'f4', credits: 25, freeMonthlyRuns: 2, now: dec })).toMatchObject({ ok: true, unit: 'run' });
      expect(await ledger.balance(owner, dec)).toMatchObject({ freeRunsLeft: 1 });
      expect(await unitTotals(h, owner)).toMatchObject({ run: 0 });
    });

    it('1,000 concurrent holds on one balance never overdraw it; the ledger sums to zero', async () => {
      const h = await make();
      const owner = `t-${randomUUID().slice(0, 8)}`;
      const ledger = h.fresh();
      await ledger.purchase(owner, 'pay-growth', 6000, NOW, 'growth'); // 6,000 credits
      // 1,000 holds of 7 credits: at most floor(6000 / 7) = 857 can fit
      const outcomes = await Promise.all(
        Array.from({ length: 1000 }, (_, i) => ledger.hold({ owner, holdId: `h-${i}`, credits: 7, now: NOW })),
      );
      const ok = outcomes.filter((o) => o.ok);
      expect(ok.length).toBe(857);
      expect(outcomes.filter((o) => !o.ok && o.reason === 'insufficient_credits').length).toBe(143);
      const b = await ledger.balance(owner, NOW);
      expect(b.available).toBe(6000 - 857 * 7);
      expect(b.available).toBeGreaterThanOrEqual(0);
      expect(b.held).toBe(857 * 7);

      // and concurrent settles with refunds keep it consistent
      await Promise.all(ok.map((o, i) => (o.ok ? ledger.settle(owner, o.holdId, i % 8, NOW + 1) : null)));
      const fresh = h.fresh();
      const after = await fresh.balance(owner, NOW);
      expect(after.held).toBe(0);
      const charged = ok.reduce((a, _o, i) => a + (i % 8), 0); // each actual (0..7) fits its hold of 7
      expect(after.available).toBe(6000 - charged);
      const entries = await h.entries(owner);
      expect([...sumsPerTx(entries).values()].every((v) => v === 0)).toBe(true);
      const consumed = entries.filter((e) => e.account === ACCOUNTS.consumed).reduce((a, e) => a + e.amount, 0);
      expect(consumed + after.available).toBe(6000);
      expect(consumed).toBe(charged);
      expect(await unitTotals(h, owner)).toEqual({ credit: 0, run: 0 });
    });

    it('bad input names the field and stores nothing', async () => {
      const h = await make();
      const ledger = h.fresh();
      const owner = `t-${randomUUID().slice(0, 8)}`;
      await expect(ledger.hold({ owner, holdId: 'a b', credits: 1, now: NOW })).rejects.toMatchObject({ code: 'FORGE_ERR_BILLING_INPUT', field: 'holdId' });
      await expect(ledger.hold({ owner, holdId: 'ok', credits: 1.5, now: NOW })).rejects.toMatchObject({ field: 'credits' });
      await expect(ledger.purchase(owner, 'p', -5, NOW)).rejects.toBeInstanceOf(BillingError);
      expect(await h.entries(owner)).toEqual([]);
    });
  });
}

ledgerSuite('in-process, memory store', async () => storeHarness(new MemoryCreditEntryStore()));

let dir = '';
let client: ClickHouseClient;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'forge-billing-ch-'));
  client = createClient({ connection: createChdbConnection({ path: dir }) } as unknown as Parameters<typeof createClient>[0]);
});
afterAll(async () => {
  await client?.close();
  rmSync(dir, { recursive: true, force: true });
});

ledgerSuite('in-process, ClickHouse store (embedded chdb)', async () => {
  const db = `billing_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
  const applied = await migrateBilling(client, db);
  expect(applied).toEqual(['0001_credit_entries.sql', '0002_billing_accounts.sql', '0003_stripe_webhook_events.sql', '0004_byok_keys.sql', '0005_usage_journal.sql', '0006_prepaid_credits.sql', '0007_commitments.sql', '0008_invoices.sql', '0009_creator_payouts_key_health.sql']);
  expect(await migrateBilling(client, db)).toEqual([]); // applied once
  const store = new ClickHouseCreditEntryStore(client, db);
  const h = storeHarness(store);
  return { ...h, entries: async (o) => {
    expect(await store.unbalancedTransactions(o)).toEqual([]); // the auditors' query agrees
    return h.entries(o);
  } };
});

let redis: RedisServer;
const conns: Redis[] = [];
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  for (const c of conns) c.disconnect();
  await redis?.stop();
});

ledgerSuite('Redis + Lua', async () => {
  const prefix = `${freshPrefix('credits')}:`;
  const conn = (): Redis => {
    const c = new Redis(redis.url, { maxRetriesPerRequest: 1 });
    conns.push(c);
    return c;
  };
  const first = new RedisCreditLedger(conn(), { prefix });
  let n = 0;
  // every fresh() after the first is another connection: a second process on the same ledger
  return { fresh: () => (n++ === 0 ? first : new RedisCreditLedger(conn(), { prefix })), entries: (o) => first.entries(o) };
});

describe('Redis ledger across processes', () => {
  it('1,000 holds racing from two connections never overdraw one balance', async () => {
    const prefix = `${freshPrefix('credits2')}:`;
    const a = new Redis(redis.url);
    const b = new Redis(redis.url);
    conns.push(a, b);
    const la = new RedisCreditLedger(a, { prefix });
    const lb = new RedisCreditLedger(b, { prefix });
    await la.purchase('t1', 'p', 1100, NOW);
    const outs = await Promise.all(Array.from({ length: 1000 }, (_, i) => (i % 2 ? la : lb).hold({ owner: 't1', holdId: `h${i}`, credits: 3, now: NOW })));
    expect(outs.filter((o) => o.ok)).toHaveLength(366); // floor(1100 / 3)
    expect(await lb.balance('t1', NOW)).toMatchObject({ available: 2, held: 1098, openHolds: 366 });
    const sums = sumsPerTx(await la.entries('t1'));
    expect([...sums.values()].every((v) => v === 0)).toBe(true);
  });

  it('fails closed when Redis is unreachable', async () => {
    const dead = new Redis('redis://127.0.0.1:1', { maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => null, lazyConnect: true });
    conns.push(dead);
    const l = new RedisCreditLedger(dead, { prefix: 'x:' });
    await expect(l.hold({ owner: 't1', holdId: 'h', credits: 1, now: NOW })).rejects.toMatchObject({ code: 'FORGE_ERR_STORE_UNAVAILABLE' });
  });
});

describe('credit ledger failure handling', () => {
  it('a failed append changes nothing: the balance stays what the store holds', async () => {
    const store = new MemoryCreditEntryStore();
    const ledger = new CreditLedger(store);
    await ledger.grant('t1', 'g', 10, NOW);
    store.failNextAppend = new Error('disk full');
    await expect(ledger.hold({ owner: 't1', holdId: 'h', credits: 4, now: NOW })).rejects.toMatchObject({ code: 'FORGE_ERR_STORE_UNAVAILABLE' });
    expect(await ledger.balance('t1', NOW)).toMatchObject({ available: 10, held: 0, openHolds: 0 });
    expect(await ledger.hold({ owner: 't1', holdId: 'h', credits: 4, now: NOW })).toMatchObject({ ok: true });
  });

  it('the hold guard (halt seam) refuses new holds', async () => {
    let halted = false;
    const ledger = new CreditLedger(new MemoryCreditEntryStore(), {
      guard: () => (halted ? { ok: false, scope: 'tenant:t1', state: 'HARD_STOP' } : { ok: true }),
    });
    await ledger.grant('t1', 'g', 10, NOW);
    halted = true;
    expect(await ledger.hold({ owner: 't1', holdId: 'h', credits: 1, now: NOW })).toEqual({ ok: false, reason: 'halted', scope: 'tenant:t1', state: 'HARD_STOP' });
    expect(await ledger.balance('t1', NOW)).toMatchObject({ available: 10 });
  });
});
