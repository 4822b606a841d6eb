import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  acknowledgeWarning,
  DAY_MS,
  emptyScope,
  evaluateAt,
  evaluateTask,
  liftStop,
  ScopeTable,
  thresholdsOf,
  usdToMicros,
  zeroComponents,
  type ScopeState,
  type TaskOutcome,
} from '../rules/index.ts';
import { bandsArb } from './helpers/rules-arbitraries.ts';

// The scope table keeps every scope's spend in a flat, mutable layout and adds a task in place, taking the
// engine's own path only when something may hold. Whatever the spend, the bands, the time, late events,
// operator decisions in between and how many scopes share the table, it must reach exactly the state the
// immutable engine reaches, with the same conditions and the same changes; and say "nothing" only when the
// engine changes nothing but the spend and the conditions holding (those are built when read).

const DAY0 = Date.parse('2026-03-02T00:00:00Z');
const KINDS = ['rli', 'gas', 'llm', 'compute', 'bandwidth'] as const;


const stepArb = fc.record({
  // Up to 20 days into the stream (more than the 8 day buckets kept, with gaps); a lag makes a late event.
  atMs: fc.integer({ min: 0, max: 20 * DAY_MS - 1 }),
  // (Up to 16 days: older than every day bucket kept, which then changes the run total alone.)
  lagMs: fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: 0, max: 3 * DAY_MS }), fc.integer({ min: 8 * DAY_MS, max: 16 * DAY_MS })),
  micros: fc.integer({ min: 0, max: 80_000_000 }),
  kind: fc.constantFrom(...KINDS),
  failed: fc.boolean(),
  scope: fc.integer({ min: 0, max: 2 }),
  // Mostly tasks; now and then the clock alone, an acknowledgement, a lift.
  action: fc.constantFrom('task', 'task', 'task', 'task', 'task', 'task', 'at', 'ack', 'lift'),
});

describe('the scope table', () => {
  it('reaches the engine state, conditions and changes for random streams, scopes, late events and operator decisions', () => {
    fc.assert(
      fc.property(fc.array(bandsArb, { minLength: 3, maxLength: 3 }), fc.array(fc.integer({ min: 0, max: 3_000_000 }), { minLength: 3, maxLength: 3 }), fc.array(stepArb, { minLength: 20, maxLength: 80 }), (bands, storage, steps) => {
        // A small initial capacity, so that growing the table is exercised too.
        const table = new ScopeTable(1);
        const keys = ['global', 'tenant:t1', 'run:t1/r1'];
        const ref: ScopeState[] = keys.map((_, k) => emptyScope(DAY0, storage[k]!));
        for (let k = 0; k < keys.length; k++) table.ensure(keys[k]!, DAY0, storage[k]!);
        const sorted = [...steps].sort((x, y) => x.atMs - y.atMs);
        for (const st of sorted) {
          const now = DAY0 + st.atMs;
          const key = keys[st.scope]!;
          const b = bands[st.scope]!;
          if (st.action === 'task') {
            // A task touches every scope, as the guard's global, tenant and run, each with its own bands.
            const at = Math.max(DAY0, now - st.lagMs);
            const op: TaskOutcome = { at, totalMicros: st.micros, failed: st.failed, components: { ...zeroComponents(), [st.kind]: st.micros } };
            for (let k = 0; k < keys.length; k++) {
              const before = ref[k]!;
              const r = evaluateTask(bands[k]!, before, op, now);
              const t = table.evaluateTask(table.indexOf(keys[k]!), bands[k]!, op, now);
              if (t === undefined) {
                // Nothing holds, or nothing that raises the guard or records a day (the holds are compared below).
                expect(r.change).toBeUndefined();
                expect(r.state.guard).toBe(before.guard);
                expect(r.state.spend.hardDays).toEqual(before.spend.hardDays);
              } else {
                expect(t.evaluation.holds).toEqual(r.holds);
                expect(t.evaluation.change).toEqual(r.change);
                expect(t.hardDaysBefore).toEqual(before.spend.hardDays);
                expect(t.evaluation.totals).toEqual(r.totals);
              }
              expect(table.holds(keys[k]!)).toEqual(r.holds);
              ref[k] = r.state;
            }
          } else {
            // Operator decisions and the clock go through the engine on the table's copy, then back.
            const mine = table.get(key)!;
            expect(mine).toEqual(ref[st.scope]);
            if (st.action === 'at') {
              const r = evaluateAt(b, mine, now);
              table.set(key, r.state, r.holds);
              ref[st.scope] = evaluateAt(b, ref[st.scope]!, now).state;
            } else {
              const r = st.action === 'ack' ? acknowledgeWarning(b, mine, now) : liftStop(b, mine, now);
              if (r.ok) table.set(key, r.state);
              const rr = st.action === 'ack' ? acknowledgeWarning(b, ref[st.scope]!, now) : liftStop(b, ref[st.scope]!, now);
              if (rr.ok) ref[st.scope] = rr.state;
            }
          }
          for (let k = 0; k < keys.length; k++) expect(table.get(keys[k]!)).toEqual(ref[k]);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('a NORMAL scope whose hard days make 3 consecutive ones takes the engine path (hard_three_days), though its bands are quiet', () => {
    const b = thresholdsOf({ daySoft: 80_000_000, dayHard: 100_000_000, weekSoft: 400_000_000, weekHard: 500_000_000, runCap: 1_000_000_000, unitCap: 200_000_000, k: 3 });
    const now = DAY0 + 2 * DAY_MS + 10 * 3_600_000;
    const today = Math.floor(now / DAY_MS);
    const s = emptyScope(DAY0);
    const three: ScopeState = { ...s, spend: { ...s.spend, hardDays: [today - 2, today - 1, today] } };
    const op: TaskOutcome = { at: now, totalMicros: 1, failed: false, components: { ...zeroComponents(), rli: 1 } };
    const table = new ScopeTable();
    table.set('run:t/r', three);
    const t = table.evaluateTask(table.indexOf('run:t/r'), b, op, now);
    const r = evaluateTask(b, three, op, now);
    expect(r.holds.map((h) => h.id)).toEqual(['hard_three_days']);
    expect(t?.evaluation.holds).toEqual(r.holds);
    expect(table.get('run:t/r')).toEqual(r.state);
    expect(table.guard('run:t/r')?.state).toBe('EMERGENCY_STOP');
  });

  it('a WARNING scope whose day is already a hard day still escalates when a hard-stop condition holds', () => {
    const b = thresholdsOf({ daySoft: 80_000_000, dayHard: 100_000_000, weekSoft: 400_000_000, weekHard: 500_000_000, runCap: 1_000_000_000, unitCap: 200_000_000, k: 3 });
    const now = DAY0 + 10 * 3_600_000;
    const today = Math.floor(now / DAY_MS);
    const s = emptyScope(DAY0);
    // As a restart may seed it: a WARNING with no waiver, today recorded hard already.
    const warned: ScopeState = { guard: { ...s.guard, state: 'WARNING', seq: 1 }, spend: { ...s.spend, hardDays: [today] } };
    const op: TaskOutcome = { at: now, totalMicros: 100_000_000, failed: false, components: { ...zeroComponents(), rli: 100_000_000 } };
    const table = new ScopeTable();
    table.set('tenant:w', warned);
    const t = table.evaluateTask(table.indexOf('tenant:w'), b, op, now);
    const r = evaluateTask(b, warned, op, now);
    expect(r.change).toEqual({ from: 'WARNING', to: 'HARD_STOP' });
    expect(t?.evaluation.change).toEqual(r.change);
    expect(table.get('tenant:w')).toEqual(r.state);
    expect(table.holds('tenant:w')).toEqual(r.holds);
  });

  it('a quiet task allocates no evaluation; a task crossing a band comes back with it and leaves the other scopes alone', () => {
    const usd = usdToMicros;
    const b = thresholdsOf({ daySoft: usd(80), dayHard: usd(100), weekSoft: usd(400), weekHard: usd(500), runCap: usd(1000), unitCap: usd(200), k: 3 });
    const now = DAY0 + 10 * 3_600_000;
    const op = (m: number): TaskOutcome => ({ at: now, totalMicros: m, failed: false, components: { ...zeroComponents(), llm: m } });
    const table = new ScopeTable(2);
    const a = table.ensure('tenant:a', DAY0);
    const z = table.ensure('tenant:z', DAY0);
    expect(table.evaluateTask(a, b, op(usd(10)), now)).toBeUndefined();
    const crossed = table.evaluateTask(a, b, op(usd(75)), now);
    expect(crossed?.evaluation.holds.map((h) => h.id)).toEqual(['day_soft']);
    expect(crossed?.evaluation.change).toEqual({ from: 'NORMAL', to: 'WARNING' });
    expect(table.guard('tenant:a')?.state).toBe('WARNING');
    expect(table.holds('tenant:a').map((h) => h.id)).toEqual(['day_soft']);
    // The other scope: untouched, and quiet on its own task.
    expect(table.get('tenant:z')).toEqual(emptyScope(DAY0));
    expect(table.evaluateTask(z, b, op(usd(1)), now)).toBeUndefined();
    expect(table.get('tenant:z')?.spend.run.totalMicros).toBe(usd(1));
    expect(table.keys()).toEqual(['tenant:a', 'tenant:z']);
  });
});
