import type { CostEvent, GuardrailEventInput, Store } from '../../store/index.ts';

/**
 * A small, hand-checkable burn history for one tenant, used by the dashboard SQL tests and the burn page
 * tests. All amounts are integer micro-dollars; "now" is 2026-03-10T12:00:00Z (a Tuesday).
 */
export const NOW = Date.parse('2026-03-10T12:00:00Z');
export const FROM = Date.parse('2026-03-01T00:00:00Z');
const at = (iso: string): number => Date.parse(iso);

interface Parts {
  rli?: number;
  gas?: number;
  compute?: number;
  storage?: number;
  llm?: number;
}

let n = 0;
export function ev(tenantId: string, id: string, time: string, p: Parts & Partial<CostEvent>): CostEvent {
  n++;
  const rli = p.rli ?? 0;
  const gas = p.gas ?? 0;
  const compute = p.compute ?? 0;
  const storage = p.storage ?? 0;
  const llm = p.llm ?? 0;
  const { rli: _r, gas: _g, compute: _c, storage: _s, llm: _l, ...rest } = p;
  return {
    eventId: id,
    tenantId,
    runId: 'r1',
    taskId: `task-${id}-${n}`,
    taskType: 'eval',
    model: '',
    environment: 'prod',
    status: 'success',
    eventTime: at(time),
    ingestTime: at(time) + 1000,
    rliMicros: rli,
    gasMicros: gas,
    computeMicros: compute,
    storageMicros: storage,
    llmMicros: llm,
    totalMicros: rli + gas + compute + storage + llm,
    gasUsed: '0',
    gasPriceGwei: '0',
    nativeUsd: '0',
    gasSource: 'none',
    chainId: 0,
    txHash: '',
    taskHours: '0',
    computeHourUsd: '0',
    gbStored: '0',
    storageGbMonthUsd: '0',
    llmTokens: [],
    ...rest,
  };
}

/** The tenant's events (e6 is after NOW; e5 before the range). */
export function tenantEvents(t: string): Record<'e1' | 'e2' | 'e3' | 'e4' | 'e5' | 'e6', CostEvent> {
  return {
    e1: ev(t, 'e1', '2026-03-02T10:00:00Z', { rli: 1_000_000, gas: 250_000, compute: 500_000, storage: 50_000, llm: 200_000, model: 'gpt-4o' }),
    e2: ev(t, 'e2', '2026-03-02T23:59:59.999Z', { rli: 2_000_000, gas: 10_000, runId: 'r2', taskType: 'agent', environment: 'staging', status: 'failed' }),
    e3: ev(t, 'e3', '2026-03-05T00:00:00.000Z', { rli: 3_000_000, gas: 500_000, model: 'gpt-4o' }),
    e4: ev(t, 'e4', '2026-03-10T11:00:00Z', { compute: 1_234_567, model: 'claude', status: 'retried' }),
    e5: ev(t, 'e5', '2026-02-28T12:00:00Z', { rli: 9_000_000 }),
    e6: ev(t, 'e6', '2026-03-10T13:00:00Z', { rli: 5_000_000 }),
  };
}

/** State changes of the tenant's scopes around NOW (and one of another tenant's). */
export function guardrailHistory(t: string, other: string): GuardrailEventInput[] {
  const h = 3_600_000;
  return [
    { eventId: `${t}-g1`, at: NOW - 1 * h, kind: 'state_change', scope: `tenant:${t}`, state: 'WARNING', previous: 'NORMAL', seq: 1, reason: 'day >= B_day_soft' },
    { eventId: `${t}-g2`, at: NOW - 2 * h, kind: 'state_change', scope: `run:${t}/r1`, state: 'HARD_STOP', previous: 'WARNING', seq: 2, reason: 'run >= B_run_cap' },
    // A de-escalation (lift): not a stop condition.
    { eventId: `${t}-g3`, at: NOW - 3 * h, kind: 'state_change', scope: `run:${t}/r1`, state: 'WARNING', previous: 'HARD_STOP', seq: 1, reason: 'lifted' },
    // Older than 24 h: in the range, not in the 24 h count.
    { eventId: `${t}-g4`, at: NOW - 25 * h, kind: 'state_change', scope: `tenant:${t}`, state: 'EMERGENCY_STOP', previous: 'NORMAL', seq: 0, reason: 'day >= 1.1 x B_day_hard' },
    { eventId: `${t}-g5`, at: NOW - 4 * h, kind: 'acknowledgement', scope: `tenant:${t}`, state: 'WARNING', previous: 'WARNING', seq: 0, actor: 'ops', reason: 'seen' },
    { eventId: `${other}-g1`, at: NOW - 1 * h, kind: 'state_change', scope: `tenant:${other}`, state: 'HARD_STOP', previous: 'NORMAL', seq: 1, reason: 'other tenant' },
  ];
}

/**
 * Writes the history through the store's public face, then duplicates e3's row at the storage level (as a
 * replay that slipped past the writer would), so queries that forget FINAL count it twice.
 */
export async function seedBurn(store: Store, rawSql: (q: string) => Promise<void>, t: string, other: string): Promise<void> {
  const e = tenantEvents(t);
  await store.writer.write([e.e5, e.e1, e.e2, e.e3, e.e4, e.e6]);
  await store.writer.write([ev(other, 'o1', '2026-03-05T10:00:00Z', { rli: 7_000_000 })]);
  await store.appendGuardrailEvents(guardrailHistory(t, other));
  await rawSql(`INSERT INTO ${store.database}.cost_events SELECT * FROM ${store.database}.cost_events WHERE tenant_id = '${t}' AND event_id = 'e3'`);
}
