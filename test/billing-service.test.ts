import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { createClient, type ClickHouseClient } from '@clickhouse/client';
import { createChdbConnection } from 'chdb/connection';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BillingService,
  ClickHouseUsageSource,
  CreditLedger,
  financeReport,
  KeyVault,
  loadPlans,
  marginReport,
  masterKeys,
  MemoryAccountStore,
  MemoryCreditEntryStore,
  MemoryUsageSource,
  MemoryVaultStore,
  newAccount,
  type BillingAccount,
  type PlanId,
} from '../billing/index.ts';

const catalog = loadPlans('config/plans.yaml');
const NOW = Date.UTC(2025, 10, 15, 12);

async function service(planId: PlanId = 'free', opts: { seats?: number; vault?: KeyVault; status?: BillingAccount['status'] } = {}) {
  const tenantId = `t-${randomUUID().slice(0, 8)}`;
  const accounts = new MemoryAccountStore();
  await accounts.put({ ...newAccount(tenantId, NOW), planId, seats: opts.seats ?? 1, status: opts.status ?? (planId === 'free' ? 'none' : 'active') });
  const usage = new MemoryUsageSource();
  const ledger = new CreditLedger(new MemoryCreditEntryStore());
  const svc = new BillingService({ catalog, accounts, usage, ledger, ...(opts.vault ? { vault: opts.vault } : {}), onFinalized: (e) => usage.record(e) });
  return { tenantId, accounts, usage, ledger, svc };
}

describe('BillingService.startJob / settleJob', () => {
  it('Free: 100 executions a month through the service, the 101st is refused with the reset time; alerts at 50/80/100 %', async () => {
    const { tenantId, svc } = await service('free');
    const alerts: number[] = [];
    for (let i = 1; i <= 100; i++) {
      const out = await svc.startJob({ tenantId, userId: 'u1', executionId: `e${i}`, skill: 'classify', maxTokens: 2000, now: NOW + i });
      expect(out.decision).toBe('allow');
      if (out.decision === 'allow') {
        expect(out.limit.executionNumber).toBe(i);
        expect(out.hold).toEqual({ unit: 'run', amount: 1 }); // a free monthly run
        alerts.push(...out.alerts.map((a) => a.percent));
      }
      await svc.settleJob({ tenantId, userId: 'u1', executionId: `e${i}`, llmMicros: 100, now: NOW + i });
    }
    expect(alerts).toEqual([50, 80, 100]);
    const d = await svc.startJob({ tenantId, userId: 'u1', executionId: 'e101', skill: 'classify', maxTokens: 2000, now: NOW + 200 });
    expect(d).toMatchObject({ decision: 'deny', reason: 'limit_reached', resetsAt: Date.UTC(2025, 11, 1) });
    // next month it runs again
    const dec = await svc.startJob({ tenantId, userId: 'u1', executionId: 'e-dec', skill: 'classify', maxTokens: 2000, now: Date.UTC(2025, 11, 1) });
    expect(dec).toMatchObject({ decision: 'allow', limit: { executionNumber: 1 } });
  });

  it('counts admitted-but-unfinished executions so racing starts cannot pass the cap', async () => {
    const { tenantId, svc, usage } = await service('free');
    for (let i = 0; i < 98; i++) usage.record({ executionId: `old${i}`, tenantId, userId: 'u1', at: NOW - 1000, llmMicros: 0, byok: false });
    const a = await svc.startJob({ tenantId, userId: 'u1', executionId: 'a', skill: 'classify', maxTokens: 10, now: NOW });
    const b = await svc.startJob({ tenantId, userId: 'u2', executionId: 'b', skill: 'classify', maxTokens: 10, now: NOW });
    const c = await svc.startJob({ tenantId, userId: 'u3', executionId: 'c', skill: 'classify', maxTokens: 10, now: NOW });
    expect([a.decision, b.decision, c.decision]).toEqual(['allow', 'allow', 'deny']);
    await svc.cancelJob(tenantId, 'b', NOW);
    expect((await svc.startJob({ tenantId, userId: 'u3', executionId: 'c2', skill: 'classify', maxTokens: 10, now: NOW })).decision).toBe('allow');
  });

  it('150 starts at once on a fresh Free team: exactly 100 allowed, the same execution id twice at once only once', async () => {
    const { tenantId, svc } = await service('free');
    const outs = await Promise.all(Array.from({ length: 150 }, (_, i) => svc.startJob({ tenantId, userId: `u${i % 7}`, executionId: `c${i}`, skill: 'classify', maxTokens: 10, now: NOW })));
    expect(outs.filter((o) => o.decision === 'allow')).toHaveLength(100);
    expect(outs.filter((o) => o.decision === 'deny' && o.reason === 'limit_reached')).toHaveLength(50);
    const same = await Promise.allSettled([0, 1].map(() => svc.startJob({ tenantId, userId: 'u1', executionId: 'c0', skill: 'classify', maxTokens: 10, now: NOW })));
    expect(same.every((r) => r.status === 'rejected')).toBe(true); // c0 is already open
    const { tenantId: t2, svc: s2 } = await service('pro');
    const twice = await Promise.allSettled([0, 1].map(() => s2.startJob({ tenantId: t2, userId: 'u1', executionId: 'dup', skill: 'classify', maxTokens: 10, now: NOW })));
    expect(twice.map((r) => r.status).sort()).toEqual(['fulfilled', 'rejected']);
  });

  it('a job started before a restart (or by another process) is settled or cancelled from the shared ledger', async () => {
    const tenantId = `t-${randomUUID().slice(0, 8)}`;
    const accounts = new MemoryAccountStore();
    await accounts.put({ ...newAccount(tenantId, NOW), planId: 'enterprise', status: 'active' });
    const entries = new MemoryCreditEntryStore();
    const usage = new MemoryUsageSource();
    const l1 = new CreditLedger(entries);
    const before = new BillingService({ catalog, accounts, usage, ledger: l1 });
    await l1.purchase(tenantId, 'pay', 1100, NOW);
    for (const id of ['j1', 'j2', 'j3']) {
      expect(await before.startJob({ tenantId, userId: 'u1', executionId: id, model: 'claude-opus', maxTokens: 100, now: NOW })).toMatchObject({ decision: 'allow', hold: { unit: 'credit', amount: 25 } });
    }
    // The process restarts: a new service and ledger over the same entries, nothing in memory.
    const l2 = new CreditLedger(entries);
    const after = new BillingService({ catalog, accounts, usage, ledger: l2 });
    expect(await after.isOpen(tenantId, 'j1')).toBe(true);
    expect(await after.isOpen(`${tenantId}x`, 'j1')).toBe(false); // another tenant finds nothing
    // Reported calls are charged (1 standard call = 5 credits) ...
    expect(await after.settleJob({ tenantId, userId: 'u1', executionId: 'j1', llmMicros: 0, modelCalls: { standard: 1 }, now: NOW + 1 })).toMatchObject({ charged: 5, refunded: 20 });
    // ... nothing reported: the whole hold; a cancel refunds it all.
    expect(await after.settleJob({ tenantId, userId: 'u1', executionId: 'j2', llmMicros: 0, now: NOW + 1 })).toMatchObject({ charged: 25, refunded: 0 });
    expect(await after.cancelJob(tenantId, 'j3', NOW + 1)).toBe(true);
    expect(await after.isOpen(tenantId, 'j3')).toBe(false);
    await expect(after.settleJob({ tenantId, userId: 'u1', executionId: 'j1', llmMicros: 0, now: NOW + 2 })).rejects.toMatchObject({ code: 'FORGE_ERR_BILLING_INPUT' });
    expect(await l2.balance(tenantId, NOW + 2)).toMatchObject({ available: 1100 - 5 - 25, held: 0, openHolds: 0 });
  });

  it('Pro: throttled after 3,000 unless the team opted in to overage', async () => {
    const { tenantId, svc, usage, ledger } = await service('pro');
    await ledger.purchase(tenantId, 'pay1', 1100, NOW);
    for (let i = 0; i < 3000; i++) usage.record({ executionId: `x${i}`, tenantId, userId: 'u1', at: NOW - 30_000 - i, llmMicros: 0, byok: false });
    const t = await svc.startJob({ tenantId, userId: 'u1', executionId: 'p1', skill: 'code', maxTokens: 1000, now: NOW });
    expect(t).toMatchObject({ decision: 'throttle', retryAfterMs: 30_000 });
    await svc.setOverage(tenantId, true, NOW);
    expect(await svc.startJob({ tenantId, userId: 'u1', executionId: 'p2', skill: 'code', maxTokens: 1000, now: NOW })).toMatchObject({ decision: 'allow', limit: { overage: false } });
  });

  it('guardrails: tokens, heavy models on Free, per-user daily spend cap on platform keys', async () => {
    const { tenantId, svc, usage } = await service('free');
    expect(await svc.startJob({ tenantId, userId: 'u1', executionId: 'a', model: 'gpt-4o-mini', maxTokens: 50_001, now: NOW })).toMatchObject({ decision: 'deny', reason: 'max_tokens' });
    expect(await svc.startJob({ tenantId, userId: 'u1', executionId: 'b', model: 'claude-opus', maxTokens: 100, now: NOW })).toMatchObject({ decision: 'deny', reason: 'model_blocked' });
    expect(await svc.startJob({ tenantId, userId: 'u1', executionId: 'c', skill: 'plan', maxTokens: 100, now: NOW })).toMatchObject({ decision: 'deny', reason: 'tier_blocked' });
    usage.record({ executionId: 'spent', tenantId, userId: 'u1', at: NOW - 1000, llmMicros: 900_000, byok: false });
    expect(await svc.startJob({ tenantId, userId: 'u1', executionId: 'd', model: 'gpt-4o', maxTokens: 100, estimatedLlmMicros: 100_001, now: NOW })).toMatchObject({
      decision: 'deny',
      reason: 'daily_spend_cap',
      resetsAt: Date.UTC(2025, 10, 16),
    });
    // another user of the same team has their own cap
    expect(await svc.startJob({ tenantId, userId: 'u2', executionId: 'e', model: 'gpt-4o', maxTokens: 100, estimatedLlmMicros: 100_001, now: NOW })).toMatchObject({ decision: 'allow' });
  });

  it('BYOK: the user’s key is routed, costs no model credits and does not count against the daily cap', async () => {
    const okFetch = (async () => new Response('{}', { status: 200 })) as typeof fetch;
    const vault = new KeyVault(masterKeys('k1', Buffer.alloc(32, 7)), new MemoryVaultStore(), { openai: { baseUrl: 'http://provider.invalid/v1', auth: 'bearer' } }, { fetch: okFetch });
    const { tenantId, svc, usage, ledger } = await service('pro', { vault });
    await vault.saveKey({ tenantId, userId: 'u1', provider: 'openai', apiKey: 'sk-user-key-123456', now: NOW });
    usage.record({ executionId: 'spent', tenantId, userId: 'u1', at: NOW - 1000, llmMicros: 5_000_000, byok: false }); // platform cap used up
    for (let i = 0; i < 500; i++) await ledger.hold({ owner: tenantId, holdId: `fr${i}`, credits: 1, freeMonthlyRuns: 500, now: NOW }); // free runs used up
    const out = await svc.startJob({ tenantId, userId: 'u1', executionId: 'byok1', model: 'gpt-4o', maxTokens: 100, estimatedLlmMicros: 1_000_000, now: NOW });
    expect(out).toMatchObject({ decision: 'allow', key: { source: 'byok' }, hold: null });
    expect(JSON.stringify(out)).not.toContain('sk-user-key-123456');
    // anthropic has no user key -> platform key, counted against the tier (cap reached)
    const plat = await svc.startJob({ tenantId, userId: 'u1', executionId: 'plat1', model: 'claude-sonnet', maxTokens: 100, estimatedLlmMicros: 1, now: NOW });
    expect(plat).toMatchObject({ decision: 'deny', reason: 'daily_spend_cap' });
  });

  it('credits: held at start, deducted on settle, the rest refunded; refused when short', async () => {
    const { tenantId, svc, ledger } = await service('pro');
    for (let i = 0; i < 500; i++) await ledger.hold({ owner: tenantId, holdId: `fr${i}`, credits: 1, freeMonthlyRuns: 500, now: NOW });
    expect(await svc.startJob({ tenantId, userId: 'u1', executionId: 'j0', model: 'claude-opus', maxTokens: 100, now: NOW })).toMatchObject({ decision: 'deny', reason: 'insufficient_credits' });
    await ledger.purchase(tenantId, 'pay', 1100, NOW);
    const out = await svc.startJob({ tenantId, userId: 'u1', executionId: 'j1', model: 'claude-opus', maxTokens: 100, sandboxTries: 3, now: NOW });
    expect(out).toMatchObject({ decision: 'allow', hold: { unit: 'credit', amount: 25 + 6 } });
    const s = await svc.settleJob({ tenantId, userId: 'u1', executionId: 'j1', modelCalls: { heavy: 1 }, sandboxTries: 1, llmMicros: 30_000, now: NOW + 5 });
    expect(s).toMatchObject({ charged: 27, refunded: 4, shortfall: 0 });
    expect(await ledger.balance(tenantId, NOW)).toMatchObject({ available: 1100 - 27, held: 0 });
  });

  it('a past_due subscription keeps its plan; a canceled one falls back to Free limits', async () => {
    const { tenantId, svc, accounts } = await service('pro', { status: 'past_due' });
    expect((await svc.plan(tenantId, NOW)).id).toBe('pro');
    const a = await accounts.get(tenantId);
    await accounts.put({ ...(a as BillingAccount), status: 'canceled' });
    expect((await svc.plan(tenantId, NOW)).id).toBe('free');
  });
});

describe('finance report: margin per tier', () => {
  it('plan price (standard / BYOK, per seat) vs LLM cost', () => {
    const acct = (tenantId: string, planId: PlanId, extra: Partial<BillingAccount> = {}): BillingAccount => ({ ...newAccount(tenantId, NOW), planId, status: 'active', ...extra });
    const accounts = [
      acct('f1', 'free', { status: 'none' }),
      acct('p1', 'pro'),
      acct('p2', 'pro', { byok: true }),
      acct('t1', 'team', { seats: 3 }),
      acct('e1', 'enterprise'),
      acct('c1', 'pro', { status: 'canceled' }),
    ];
    const llm = new Map([
      ['f1', 400_000],
      ['p1', 2_500_000],
      ['p2', 100_000],
      ['t1', 30_000_000],
      ['e1', 1_000_000],
      ['c1', 50_000],
    ]);
    const r = marginReport(catalog, accounts, llm, { from: Date.UTC(2025, 10, 1), to: Date.UTC(2025, 11, 1) });
    const row = (id: string) => r.rows.find((x) => x.planId === id);
    expect(row('free')).toMatchObject({ tenants: 2, revenueMicros: 0, llmCostMicros: 450_000, marginMicros: -450_000, marginRatio: null });
    expect(row('pro')).toMatchObject({ tenants: 2, revenueMicros: 14_000_000, llmCostMicros: 2_600_000, marginMicros: 11_400_000, marginRatio: '0.8143' });
    expect(row('team')).toMatchObject({ tenants: 1, seats: 3, revenueMicros: 87_000_000, llmCostMicros: 30_000_000, marginMicros: 57_000_000, marginRatio: '0.6552' });
    expect(row('enterprise')).toMatchObject({ customPriced: 1, revenueMicros: 0, llmCostMicros: 1_000_000 });
    expect(r.total).toMatchObject({ tenants: 6, revenueMicros: 101_000_000, llmCostMicros: 34_050_000, marginMicros: 66_950_000 });
  });
});

describe('metering from the event log (cost_events in embedded ClickHouse)', () => {
  let dir = '';
  let client: ClickHouseClient;
  const db = `bill_${randomUUID().replaceAll('-', '').slice(0, 10)}`;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'forge-billing-meter-'));
    client = createClient({ connection: createChdbConnection({ path: dir }) } as unknown as Parameters<typeof createClient>[0]);
    await client.command({ query: `CREATE DATABASE ${db}` });
    // The store's own DDL for the event log, rendered for one node.
    const ddl = readFileSync('store/migrations/0001_cost_events.sql', 'utf8')
      .replaceAll('{{table}}', `${db}.cost_events`)
      .replaceAll('{{on_cluster}}', '')
      .replaceAll('{{dedup_window}}', 'non_replicated_deduplication_window');
    await client.command({ query: ddl });
  });
  afterAll(async () => {
    await client?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function insert(rows: { tenant: string; id: string; at: number; llm: number }[]) {
    await client.insert({
      table: `${db}.cost_events`,
      values: rows.map((r) => ({ tenant_id: r.tenant, event_id: r.id, event_time: r.at, ingest_time: r.at, status: 'success', llm_micros: r.llm, total_micros: r.llm })),
      format: 'JSONEachRow',
    });
  }

  it('counts executions per team and month once per event id, and LLM spend per tenant', async () => {
    const nov = Date.UTC(2025, 10, 1);
    await insert([
      { tenant: 'tA', id: 'e1', at: nov + 1000, llm: 100 },
      { tenant: 'tA', id: 'e2', at: nov + 2000, llm: 200 },
      { tenant: 'tA', id: 'e3', at: Date.UTC(2025, 11, 1), llm: 400 }, // December
      { tenant: 'tB', id: 'e1', at: nov + 1000, llm: 800 },
    ]);
    await insert([{ tenant: 'tA', id: 'e2', at: nov + 2000, llm: 200 }]); // a replayed event
    const src = new ClickHouseUsageSource(client, { table: `${db}.cost_events` });
    expect(await src.executions({ tenantId: 'tA', from: nov, to: Date.UTC(2025, 11, 1) })).toEqual({ count: 2, lastAt: nov + 2000 });
    expect(await src.executions({ tenantId: 'tC', from: nov, to: Date.UTC(2025, 11, 1) })).toEqual({ count: 0, lastAt: null });
    expect(await src.platformLlmMicros({ tenantId: 'tA', from: nov, to: Date.UTC(2025, 11, 1) })).toBe(300);
    await expect(src.platformLlmMicros({ tenantId: 'tA', userId: 'u1', from: nov, to: nov + 1 })).rejects.toMatchObject({ field: 'userColumn' });

    const accounts = [
      { ...newAccount('tA', NOW), planId: 'pro' as const, status: 'active' as const },
      { ...newAccount('tB', NOW), planId: 'pro' as const, status: 'active' as const, byok: true },
    ];
    const r = await financeReport(catalog, accounts, src, { from: nov, to: Date.UTC(2025, 11, 1) });
    expect(r.rows.find((x) => x.planId === 'pro')).toMatchObject({ tenants: 2, revenueMicros: 14_000_000, llmCostMicros: 1100 });
  });
});
