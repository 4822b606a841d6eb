import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { InProcessHaltBus, InProcessLedger } from '../guard/index.ts';
import { parseTaskEvent } from '../collector/index.ts';
import { parseBandsConfig, type BandsBook, type StateChange } from '../rules/index.ts';
import { guardrailOn } from './helpers/guardrail.ts';
import {
  estimateSuite,
  parseSuite,
  runSuite,
  type EventEmitterClient,
  type SuiteProgress,
  type TaskFinalizedEvent,
} from '../runner/index.ts';

const SUITE_TEXT = readFileSync(new URL('../config/sample-suite.yaml', import.meta.url), 'utf8');
// The same suite, time-compressed for tests: a task hour runs 0.2 s.
const FAST = SUITE_TEXT.replace(/^seconds_per_hour: .*$/m, 'seconds_per_hour: 0.2');

/** Events as the collector would see them: each must pass the collector's own validation. */
class CheckedEvents implements EventEmitterClient {
  readonly events: TaskFinalizedEvent[] = [];
  readonly rejected: string[] = [];
  async emit(e: TaskFinalizedEvent): Promise<void> {
    const r = parseTaskEvent(JSON.parse(JSON.stringify(e)), { now: Date.now() });
    if (!r.ok) this.rejected.push(`${e.task_id}: ${r.field} ${r.reason}`);
    this.events.push(e);
  }
}

let n = 0;
function world(bands?: BandsBook) {
  const bus = new InProcessHaltBus({ onError: () => {} });
  const ledger = new InProcessLedger();
  const { admission } = guardrailOn({ ledger, bus, ...(bands ? { bands } : {}) });
  const events = new CheckedEvents();
  return { bus, ledger, admission, events, runId: `suite-${process.pid}-${++n}` };
}

describe('sample suite', () => {
  it('has 40 tasks, 20 payer and 20 provider, each with a full cost profile', () => {
    const s = parseSuite(SUITE_TEXT);
    expect(s.tasks).toHaveLength(40);
    const domains = Object.values(s.domains);
    expect(domains.filter((d) => d === 'payer')).toHaveLength(20);
    expect(domains.filter((d) => d === 'provider')).toHaveLength(20);
    for (const t of s.tasks) {
      expect(Number(t.profile!.rliEvalUsd)).toBeGreaterThan(0);
      expect(Number(t.profile!.runtimeHours)).toBeGreaterThan(0);
      expect(t.profile!.llm[0]!.inputTokens).toBeGreaterThan(0);
    }
    expect(s.tasks.some((t) => t.profile!.gasUsed > 0)).toBe(true);
    // Enough to cross the demo tenant's day hard band (100 USD), under the 10 USD unit cap each.
    const est = estimateSuite(s);
    expect(est.reduce((a, x) => a + x.totalMicros, 0)).toBeGreaterThan(100_000_000);
    expect(Math.max(...est.map((x) => x.totalMicros))).toBeLessThan(10_000_000);
  });

  it('names the bad field of a broken suite', () => {
    expect(() => parseSuite(SUITE_TEXT.replace('gas_used: 0,', 'gas_used: -5,'))).toThrow(/tasks\[\d+\]\.cost\.gas_used/);
    expect(() => parseSuite(SUITE_TEXT.replace('domain: payer', 'domain: pharmacy'))).toThrow(/tasks\[0\]\.domain: must be payer or provider/);
    expect(() => parseSuite(SUITE_TEXT.replace(/^tenant: demo$/m, 'tenant: "a b"'))).toThrow(expect.objectContaining({ code: 'FORGE_ERR_SUITE_CONFIG', field: 'tenant' }));
  });
});

describe('runSuite (embedded default: in-process queue, bus and ledger)', () => {
  it('runs all 40 tasks as child processes, emits a valid cost event each, and settles them in the ledger', async () => {
    const w = world();
    const report = await runSuite({ suite: parseSuite(FAST), runId: w.runId, bus: w.bus, admission: w.admission, events: w.events, concurrency: 4 });
    expect(report.outcomes).toHaveLength(40);
    expect(report.notStarted).toEqual([]);
    expect(report.outcomes.every((o) => o.status === 'success' && o.emitted && o.settled)).toBe(true);
    expect(w.events.rejected).toEqual([]);
    expect(new Set(w.events.events.map((e) => e.event_id)).size).toBe(40);
    const snap = await w.ledger.snapshot(`run:demo/${w.runId}`, Date.now());
    expect(snap).toMatchObject({ runMicros: report.totalCostMicros, reservedMicros: 0, openReservations: 0 });
    // A payer task's event carries its gas and tokens.
    const ev = w.events.events.find((e) => e.task_id === 'payer-07-hcc-risk-adjustment')!;
    expect(ev).toMatchObject({ status: 'success', rli_eval_usd: '3.70', gas: { gas_used: '600000', gas_price_gwei: '2', chain_id: 31337 }, llm: [{ model: 'gpt-4o', input_tokens: 200000, output_tokens: 30000 }] });
  });

  it('stops at the day hard cap: admitted spend passes it by at most one estimate, the rest is left unstarted', async () => {
    const bands = parseBandsConfig(readFileSync(new URL('../config/pilot-budgets.yaml', import.meta.url), 'utf8'));
    const w = world(bands);
    const s = parseSuite(FAST);
    const report = await runSuite({ suite: s, runId: w.runId, bus: w.bus, admission: w.admission, events: w.events, concurrency: 3 });
    const dayHard = bands.forScope('tenant:demo').dayHard;
    const maxEstimate = Math.max(...estimateSuite(s).map((x) => x.totalMicros));
    expect(report.outcomes.length).toBeGreaterThan(10);
    expect(report.outcomes.length + report.notStarted.length).toBe(40);
    expect(report.notStarted.length).toBeGreaterThan(0);
    // The settle that crosses the band stops the scope (day_hard), or the ledger refuses the next reservation.
    expect(report.haltedBy?.reason).toMatch(/cap of (tenant:demo|run:demo)|finalized: .*day_hard/);
    expect(report.totalCostMicros).toBeLessThan(dayHard + maxEstimate);
  });

  it('a HARD_STOP mid-run stops intake: tasks in flight finish, no new task starts', async () => {
    const w = world();
    const progress: SuiteProgress[] = [];
    let published = false;
    const report = await runSuite({
      suite: parseSuite(FAST),
      runId: w.runId,
      bus: w.bus,
      admission: w.admission,
      events: w.events,
      concurrency: 2,
      onProgress: (p) => {
        progress.push(p);
        if (p.kind === 'end' && !published && progress.filter((x) => x.kind === 'end').length === 5) {
          published = true;
          void w.bus.publish(halt('tenant:demo', 1, 'HARD_STOP'));
        }
      },
    });
    const startsAfterHalt = progress.slice(progress.findIndex((p) => p.kind === 'intake' && !p.open)).filter((p) => p.kind === 'start');
    expect(startsAfterHalt).toEqual([]);
    expect(report.outcomes.length).toBeGreaterThanOrEqual(5);
    expect(report.outcomes.length).toBeLessThanOrEqual(7);
    expect(report.outcomes.every((o) => o.status === 'success')).toBe(true);
    expect(report.haltedBy).toMatchObject({ scope: 'tenant:demo', state: 'HARD_STOP' });
    expect(report.notStarted.length).toBe(40 - report.outcomes.length);
  });

  it("whenHalted 'wait' holds the queue through a halt and resumes on the lift", async () => {
    const w = world();
    await w.bus.publish(halt('global', 1, 'HARD_STOP'));
    const s = parseSuite(FAST);
    s.tasks.splice(6);
    const intake: boolean[] = [];
    const done = runSuite({ suite: s, runId: w.runId, bus: w.bus, admission: w.admission, events: w.events, whenHalted: 'wait', onProgress: (p) => p.kind === 'intake' && intake.push(p.open) });
    await new Promise((r) => setTimeout(r, 200));
    expect(w.events.events).toEqual([]);
    await w.bus.publish({ ...halt('global', 2, 'NORMAL'), previous: 'HARD_STOP' });
    const report = await done;
    expect(report.outcomes).toHaveLength(6);
    expect(intake).toEqual([false, true]);
  });
});

function halt(scope: string, seq: number, state: StateChange['state']): StateChange {
  return { scope, state, previous: 'NORMAL', seq, at: Date.now(), reason: `test ${state}`, holds: [], weekMicros: 0 };
}
