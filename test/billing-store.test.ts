import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore, type Store } from '../store/index.ts';
import {
  BillingService,
  CreditLedger,
  financeReport,
  loadPlans,
  MemoryAccountStore,
  MemoryCreditEntryStore,
  newAccount,
  StoreUsageSource,
} from '../billing/index.ts';
import { freshTenant, makeEvent, tempDataDir } from './helpers/store-events.ts';

const catalog = loadPlans('config/plans.yaml');
const NOW = Date.UTC(2025, 10, 15, 12);
const NOV = Date.UTC(2025, 10, 1);

const tmp = tempDataDir('forge-billing-store');
let store: Store;
beforeAll(async () => {
  store = await openStore({ dataDir: tmp.dir, onError: () => {} });
});
afterAll(async () => {
  await store?.close();
  tmp.remove();
});

describe('metering through the store (the event log is the source of truth)', () => {
  it('a Free team with 99 finalized executions in the log gets the 100th, not the 101st', async () => {
    const tenantId = freshTenant('bill');
    const events = Array.from({ length: 99 }, (_, i) => makeEvent(i, { tenantId, eventTime: NOV + 60_000 * i, eventId: `${tenantId}-e${i}` }));
    await store.writer.write(events);
    await store.writer.write(events.slice(0, 10)); // a replayed batch counts once
    await store.writer.write([makeEvent(1000, { tenantId, eventTime: Date.UTC(2025, 9, 31, 23, 59), eventId: `${tenantId}-oct` })]); // October

    const usage = new StoreUsageSource(store);
    expect(await usage.executions({ tenantId, from: NOV, to: Date.UTC(2025, 11, 1) })).toEqual({ count: 99, lastAt: null });
    const accounts = new MemoryAccountStore();
    const svc = new BillingService({ catalog, accounts, usage, ledger: new CreditLedger(new MemoryCreditEntryStore()), perUserFromLog: false });
    const a = await svc.startJob({ tenantId, userId: 'u1', executionId: 'x100', skill: 'classify', maxTokens: 100, now: NOW });
    expect(a).toMatchObject({ decision: 'allow', limit: { executionNumber: 100 } });
    const b = await svc.startJob({ tenantId, userId: 'u1', executionId: 'x101', skill: 'classify', maxTokens: 100, now: NOW });
    expect(b).toMatchObject({ decision: 'deny', reason: 'limit_reached', resetsAt: Date.UTC(2025, 11, 1) });

    // per-user daily spend counted in-process when the log has no user ids
    await svc.settleJob({ tenantId, userId: 'u1', executionId: 'x100', llmMicros: 990_000, now: NOW });
    const expected = events.reduce((s, e) => s + e.llmMicros, 0);
    const report = await financeReport(catalog, [{ ...newAccount(tenantId, NOW) }], usage, { from: NOV, to: Date.UTC(2025, 11, 1) });
    expect(report.rows.find((r) => r.planId === 'free')).toMatchObject({ tenants: 1, llmCostMicros: expected });
  });

  it('per-user daily cap without user ids in the log: the service counts settled spend per user', async () => {
    const tenantId = freshTenant('bill');
    const svc = new BillingService({
      catalog,
      accounts: new MemoryAccountStore(),
      usage: new StoreUsageSource(store),
      ledger: new CreditLedger(new MemoryCreditEntryStore()),
      perUserFromLog: false,
    });
    await svc.startJob({ tenantId, userId: 'u1', executionId: 'a', model: 'gpt-4o-mini', maxTokens: 100, now: NOW });
    const s = await svc.settleJob({ tenantId, userId: 'u1', executionId: 'a', llmMicros: 800_000, now: NOW });
    expect(s.alerts.map((x) => x.percent)).toEqual([50, 80]);
    expect(await svc.startJob({ tenantId, userId: 'u1', executionId: 'b', model: 'gpt-4o-mini', maxTokens: 100, estimatedLlmMicros: 200_001, now: NOW })).toMatchObject({
      decision: 'deny',
      reason: 'daily_spend_cap',
    });
    expect(await svc.startJob({ tenantId, userId: 'u2', executionId: 'c', model: 'gpt-4o-mini', maxTokens: 100, estimatedLlmMicros: 200_001, now: NOW })).toMatchObject({
      decision: 'allow',
    });
  });
});
