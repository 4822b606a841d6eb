import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BillingService,
  ClickHouseKeyHealthStore,
  KeyVault,
  masterKeys,
  MemoryVaultStore,
  ClickHouseUsageJournal,
  CreditLedger,
  loadPlans,
  MemoryAccountStore,
  MemoryCreditEntryStore,
  MemoryUsageSource,
  migrateBilling,
  newAccount,
} from '../billing/index.ts';
import { openStore, type Store } from '../store/index.ts';
import { tempDataDir } from './helpers/store-events.ts';

// Per-user day spend and the throttle clock come from shared state (the usage journal in the store): a
// second API process, or this one after a restart, sees what the first admitted and settled.

const catalog = loadPlans('config/plans.yaml');
const NOW = Date.UTC(2026, 10, 15, 12);
const tmp = tempDataDir('forge-journal');
let store: Store;

beforeAll(async () => {
  store = await openStore({ dataDir: tmp.dir });
  await migrateBilling(store.client, store.database);
});
afterAll(async () => {
  await store?.close();
  tmp.remove();
});

async function twoProcesses(planId: 'free' | 'pro') {
  const tenantId = `t-${randomUUID().slice(0, 8)}`;
  const accounts = new MemoryAccountStore();
  await accounts.put({ ...newAccount(tenantId, NOW), planId, status: planId === 'free' ? 'none' : 'active' });
  const usage = new MemoryUsageSource();
  const ledger = new CreditLedger(new MemoryCreditEntryStore());
  await ledger.purchase(tenantId, 'pay', 100_000, NOW);
  // Each "process" has its own service (its own in-memory state) over the same journal tables.
  const make = () => new BillingService({ catalog, accounts, usage, ledger, journal: new ClickHouseUsageJournal(store.client, store.database), perUserFromLog: false });
  return { tenantId, a: make(), b: make(), usage };
}

describe('the usage journal', () => {
  it('a user\'s platform spend settled in one process counts against the daily cap in another (Free: 1 USD)', async () => {
    const { tenantId, a, b } = await twoProcesses('free');
    expect(await a.startJob({ tenantId, userId: 'u1', executionId: 'e1', model: 'gpt-4o-mini', maxTokens: 100, estimatedLlmMicros: 10, now: NOW })).toMatchObject({ decision: 'allow' });
    await a.settleJob({ tenantId, userId: 'u1', executionId: 'e1', llmMicros: 999_990, now: NOW + 1 });
    // 10 micros left under the cap: an estimate of 10 fits, 11 does not.
    expect(await b.startJob({ tenantId, userId: 'u1', executionId: 'e2', model: 'gpt-4o-mini', maxTokens: 100, estimatedLlmMicros: 11, now: NOW + 2 })).toMatchObject({ decision: 'deny', reason: 'daily_spend_cap' });
    expect(await b.startJob({ tenantId, userId: 'u1', executionId: 'e3', model: 'gpt-4o-mini', maxTokens: 100, estimatedLlmMicros: 10, now: NOW + 3 })).toMatchObject({ decision: 'allow' });
    expect((await b.usageSummary(tenantId, NOW + 4, 'u1')).user?.platformSpendTodayMicros).toBe(999_990 + 10);
    // The next UTC day starts from zero.
    expect((await b.usageSummary(tenantId, Date.UTC(2026, 10, 16), 'u1')).user?.platformSpendTodayMicros).toBe(0);
  });

  it('the throttle clock is shared: past 3,000 Pro executions, an admission in one process throttles the next in the other', async () => {
    const { tenantId, a, b, usage } = await twoProcesses('pro');
    for (let i = 0; i < 3000; i++) usage.record({ executionId: `x${i}`, tenantId, userId: 'u1', at: NOW - 3_600_000 - i, llmMicros: 0, byok: false });
    expect(await a.startJob({ tenantId, userId: 'u1', executionId: 'p1', skill: 'code', maxTokens: 1000, now: NOW })).toMatchObject({ decision: 'allow' });
    // 10 s later in the other process: one per minute past the throttle point, so 50 s to wait.
    expect(await b.startJob({ tenantId, userId: 'u1', executionId: 'p2', skill: 'code', maxTokens: 1000, now: NOW + 10_000 })).toMatchObject({ decision: 'throttle', retryAfterMs: 50_000 });
    expect(await b.startJob({ tenantId, userId: 'u1', executionId: 'p3', skill: 'code', maxTokens: 1000, now: NOW + 60_000 })).toMatchObject({ decision: 'allow' });
  });
});

describe('BYOK key health', () => {
  it('records what the runner reports about the user\'s key at settle, per key, and alerts all but ok', async () => {
    const okFetch = (async () => new Response('{}', { status: 200 })) as typeof fetch;
    const vault = new KeyVault(masterKeys('k1', Buffer.alloc(32, 7)), new MemoryVaultStore(), { openai: { baseUrl: 'http://provider.invalid/v1', auth: 'bearer' } }, { fetch: okFetch });
    const tenantId = `t-${randomUUID().slice(0, 8)}`;
    const accounts = new MemoryAccountStore();
    await accounts.put({ ...newAccount(tenantId, NOW), planId: 'pro', status: 'active' });
    const keyHealth = new ClickHouseKeyHealthStore(store.client, store.database);
    const svc = new BillingService({ catalog, accounts, usage: new MemoryUsageSource(), ledger: new CreditLedger(new MemoryCreditEntryStore()), vault, keyHealth });
    await vault.saveKey({ tenantId, userId: 'u1', provider: 'openai', apiKey: 'sk-user-key-123456', now: NOW });
    await vault.saveKey({ tenantId, userId: 'u1', provider: 'openai', apiKey: 'sk-agent-key-654321', agentId: 'bot-7', now: NOW });

    // Each settle a millisecond after the one before: the newest report per key is the one kept.
    let settled = 0;
    const run = async (id: string, agentId: string | undefined, keyStatus: 'ok' | 'rate_limited' | 'expired') => {
      expect(await svc.startJob({ tenantId, userId: 'u1', executionId: id, model: 'gpt-4o', maxTokens: 100, now: NOW, ...(agentId ? { agentId } : {}) })).toMatchObject({ decision: 'allow', key: { source: 'byok' } });
      return svc.settleJob({ tenantId, userId: 'u1', executionId: id, llmMicros: 0, keyStatus, keyDetail: `${keyStatus} from provider`, now: NOW + ++settled });
    };
    expect((await run('k1', undefined, 'ok')).keyAlert).toBeUndefined();
    expect((await run('k2', undefined, 'rate_limited')).keyAlert).toMatchObject({ provider: 'openai', agentId: '*', status: 'rate_limited', severity: 'warning' });
    expect((await run('k3', 'bot-7', 'expired')).keyAlert).toMatchObject({ agentId: 'bot-7', status: 'expired', severity: 'action_required', message: expect.stringContaining('replace the key') });
    const latest = await keyHealth.latest(tenantId, 'u1');
    expect(latest.map((k) => [k.provider, k.agentId, k.status, k.executionId])).toEqual([['openai', '*', 'rate_limited', 'k2'], ['openai', 'bot-7', 'expired', 'k3']]);
    // A platform-key execution reports nothing about a user key.
    expect((await svc.startJob({ tenantId, userId: 'u1', executionId: 'p1', model: 'claude-sonnet', maxTokens: 100, now: NOW })).decision).toBe('allow');
  });
});
