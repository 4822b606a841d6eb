import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { applyTask, conditionsFor, conditionsForFull, DAY_MS, emptySpend, thresholdsOf, zeroComponents, type ScopeSpend, type TaskOutcome } from '../rules/index.ts';
import { bandsArb } from './helpers/rules-arbitraries.ts';

// conditionsFor skips building the component breakdowns when a scope is quiet (no band near). Whatever the
// spend, the bands, the time and the task (late ones included), it must give exactly what the full
// evaluation gives: the same conditions with the same figures and top components, and the same spend.

const DAY0 = Date.parse('2026-03-02T00:00:00Z');
const KINDS = ['rli', 'gas', 'llm', 'compute'] as const;


const taskArb = fc.record({
  // Up to 9 days into the stream; a negative lag makes a late event (finalized before "now").
  atMs: fc.integer({ min: 0, max: 9 * DAY_MS - 1 }),
  lagMs: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 3 * DAY_MS })),
  micros: fc.integer({ min: 0, max: 80_000_000 }),
  kind: fc.constantFrom(...KINDS),
  failed: fc.boolean(),
});

describe('the quiet-scope shortcut of conditionsFor', () => {
  it('equals the full evaluation for random streams, bands, storage and late tasks', () => {
    fc.assert(
      fc.property(bandsArb, fc.integer({ min: 0, max: 3_000_000 }), fc.array(taskArb, { minLength: 1, maxLength: 40 }), (b, storage, tasks) => {
        let spend: ScopeSpend = emptySpend(storage);
        const sorted = [...tasks].sort((x, y) => x.atMs - y.atMs);
        for (const t of sorted) {
          const now = DAY0 + t.atMs;
          const at = Math.max(DAY0, now - t.lagMs);
          const op: TaskOutcome = { at, totalMicros: t.micros, failed: t.failed, components: { ...zeroComponents(), [t.kind]: t.micros } };
          const after = applyTask(spend, op, b.unitCap);
          const fast = conditionsFor(b, after, now, op);
          const full = conditionsForFull(b, after, now, op);
          expect(fast.holds).toEqual(full.holds);
          expect(fast.spend).toEqual(full.spend);
          // And with no task (an hourly rollup) at the same time.
          expect(conditionsFor(b, fast.spend, now).holds).toEqual(conditionsForFull(b, fast.spend, now).holds);
          spend = fast.spend;
        }
      }),
      { numRuns: 400 },
    );
  });

  it('a quiet scope raises nothing, a scope at its soft band raises day_soft, on both paths', () => {
    const b = thresholdsOf({ daySoft: 80_000_000, dayHard: 100_000_000, weekSoft: 400_000_000, weekHard: 500_000_000, runCap: 1_000_000_000, unitCap: 200_000_000, k: 3 });
    const now = DAY0 + 10 * 3_600_000;
    const op = (m: number): TaskOutcome => ({ at: now, totalMicros: m, failed: false, components: { ...zeroComponents(), llm: m } });
    const quiet = applyTask(emptySpend(), op(10_000_000), b.unitCap);
    expect(conditionsFor(b, quiet, now, op(10_000_000)).holds).toEqual([]);
    const hot = applyTask(quiet, op(75_000_000), b.unitCap);
    expect(conditionsFor(b, hot, now, op(75_000_000)).holds.map((h) => h.id)).toContain('day_soft');
    expect(conditionsFor(b, hot, now, op(75_000_000)).holds).toEqual(conditionsForFull(b, hot, now, op(75_000_000)).holds);
  });
});
