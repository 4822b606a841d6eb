import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { addComponentsInto, zeroComponents, type ComponentMicros } from '../../rules/index.ts';
import { eventComponents, type CostEvent } from '../../store/index.ts';

/** A fresh tenant id per test: isolation inside one shared store. */
export function freshTenant(prefix = 't'): string {
  return `${prefix}-${randomUUID().slice(0, 12)}`;
}

/** A temp data directory for one test file (the embedded engine binds one per process). */
export function tempDataDir(name = 'forge-store'): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), `${name}-`));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export const DAY_MS = 86_400_000;
export const HOUR_MS = 3_600_000;

/**
 * Event i of a deterministic stream: components vary with i so sums catch a dropped or doubled row;
 * every 10th failed, every 25th retried. Cheap to build (no randomness) for million-row tests.
 */
export function makeEvent(i: number, base: Partial<CostEvent> & { tenantId: string; eventTime: number }): CostEvent {
  const rli = 1000 + (i % 7);
  const gas = 200 + (i % 11);
  const compute = 30 + (i % 13);
  const storage = 4 + (i % 3);
  const llm = i % 5 === 0 ? 0 : 50 + (i % 17);
  return {
    eventId: `ev-${i}`,
    runId: `run-${i % 3}`,
    taskId: `task-${i}`,
    taskType: i % 2 === 0 ? 'eval' : 'agent',
    model: i % 4 === 0 ? 'gpt-4o' : 'claude',
    environment: i % 3 === 0 ? 'staging' : 'prod',
    status: i % 10 === 0 ? 'failed' : i % 25 === 0 ? 'retried' : 'success',
    ingestTime: base.eventTime + 1000,
    rliMicros: rli,
    gasMicros: gas,
    computeMicros: compute,
    storageMicros: storage,
    llmMicros: llm,
    totalMicros: rli + gas + compute + storage + llm,
    gasUsed: String(21_000 + i),
    gasPriceGwei: '1.25',
    nativeUsd: '3021.5',
    gasSource: 'receipt',
    chainId: 31337,
    txHash: `0x${(i + 1).toString(16).padStart(64, '0')}`,
    taskHours: '0.25',
    computeHourUsd: '1.2',
    gbStored: '10',
    storageGbMonthUsd: '0.023',
    llmTokens: llm === 0 ? [] : [{ model: 'claude', inputTokens: 100 + i, outputTokens: 20 }],
    ...base,
  };
}

/** Expected sums of a set of events, the way the store should total them. */
export interface Expected extends ComponentMicros {
  total: number;
  tasks: number;
  succeeded: number;
  failed: number;
  retried: number;
}

export function emptyExpected(): Expected {
  return { ...zeroComponents(), total: 0, tasks: 0, succeeded: 0, failed: 0, retried: 0 };
}

export function addExpected(acc: Expected, e: CostEvent): void {
  addComponentsInto(acc, eventComponents(e));
  acc.total += e.totalMicros;
  acc.tasks += 1;
  if (e.status === 'success') acc.succeeded += 1;
  else acc.failed += 1;
  if (e.status === 'retried') acc.retried += 1;
}

export function expectedOf(events: readonly CostEvent[]): Expected {
  const acc = emptyExpected();
  for (const e of events) addExpected(acc, e);
  return acc;
}

/** The store's Totals in the Expected shape, for one toEqual. */
export function flat(t: {
  components: ComponentMicros;
  totalMicros: number;
  tasks: number;
  succeeded: number;
  failed: number;
  retried: number;
}): Expected {
  return { ...t.components, total: t.totalMicros, tasks: t.tasks, succeeded: t.succeeded, failed: t.failed, retried: t.retried };
}
