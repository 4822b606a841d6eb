import Decimal from 'decimal.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  acknowledgeWarning,
  bandsFromApproved,
  emptyScope,
  evaluateAt,
  evaluateRollup,
  evaluateTask,
  gasCost,
  gasCostFromWei,
  computeCost,
  llmCost,
  liftStop,
  microsToUsd,
  rliCost,
  storageDayCost,
  storageOpCost,
  thresholdsOf,
  totalsOf,
  usdToMicros,
  zeroComponents,
  CostModelError,
  type Bands,
  type ScopeState,
  type TaskOutcome,
} from '../rules/index.ts';

const usd = usdToMicros;
const T0 = Date.parse('2026-03-02T09:00:00Z');
const H = 3_600_000;
const bands: Bands = { daySoft: usd(80), dayHard: usd(100), weekSoft: usd(400), weekHard: usd(500), runCap: usd(1000), unitCap: usd(200), k: 3 };
const b = thresholdsOf(bands);
/** Bands for the unit-cap rules: unit cap $50, day and week bands far away. */
const u = thresholdsOf({ ...bands, unitCap: usd(50), daySoft: usd(900), dayHard: usd(1000), weekSoft: usd(4000), weekHard: usd(5000), runCap: usd(9000) });

function task(at: number, total: string, opts: { failed?: boolean; gas?: boolean } = {}): TaskOutcome {
  const m = usd(total);
  return { at, totalMicros: m, failed: opts.failed ?? false, components: { ...zeroComponents(), [opts.gas ? 'gas' : 'rli']: m } };
}

function run(events: TaskOutcome[], s: ScopeState = emptyScope(T0), bb = b) {
  let last = evaluateTask(bb, s, events[0]!, events[0]!.at);
  for (const e of events.slice(1)) last = evaluateTask(bb, last.state, e, e.at);
  return last;
}

describe('per-operation equations (hand-computed)', () => {
  it('RLI is the evaluation fee', () => expect(rliCost('0.125')).toBe(125_000));
  it('gas: 21000 units at 30 gwei and $2500', () => expect(microsToUsd(gasCost(21000, '30', '2500'))).toBe('1.575'));
  it('gas: zero gas used costs nothing whatever the price', () => expect(gasCost(0, '999', '99999')).toBe(0));
  it('gas from a receipt in wei equals gas from gwei', () => {
    expect(gasCostFromWei(21000n, 30_000_000_000n, '2500')).toBe(gasCost(21000, '30', '2500'));
  });
  it('gas: sub-gwei price (0.000000001 gwei = 1 wei) rounds half-even to micros', () => {
    // 1e6 gas * 1 wei * $1e6 = 1e12 wei-usd = 1e-6 USD = 1 micro
    expect(gasCost(1_000_000, '0.000000001', '1000000')).toBe(1);
  });
  it('gas: fractional gas units are refused', () => expect(() => gasCost('1.5', '1', '1')).toThrow(CostModelError));
  it('compute: 0.25 h at $1.60', () => expect(computeCost('0.25', '1.60')).toBe(400_000));
  it('storage day: 300 GB at $0.23/GB-month = $2.30', () => expect(storageDayCost(300, '0.23')).toBe(2_300_000));
  it('storage op with N_tasks_day = 0 charges the whole day', () => expect(storageOpCost(300, '0.23', 0)).toBe(2_300_000));
  it('storage op with 3 tasks divides exactly before rounding', () => expect(storageOpCost(1, '1', 3)).toBe(11_111));
  it('LLM tokens priced per million by model', () => {
    const prices = { m1: { inputPerMTokUsd: '3', outputPerMTokUsd: '15' } };
    expect(llmCost([{ model: 'm1', inputTokens: 1000, outputTokens: 2000 }], prices)).toBe(33_000);
  });
  it('LLM with an unpriced model names the field', () => {
    expect(() => llmCost([{ model: 'x', inputTokens: 1, outputTokens: 1 }], {})).toThrow(/llm\[0\]\.model/);
  });
  it('negative inputs are refused with the field named', () => expect(() => computeCost('-1', '1')).toThrow(/taskHours/));
  it('approved budget 100 gives soft 80, hard 100, emergency 110', () => {
    expect(bandsFromApproved('100')).toEqual({ soft: usd(80), hard: usd(100), emergency: usd(110) });
  });
  it('no drift: a million additions of $0.10 are exactly $100,000', () => {
    let m = 0;
    const ten = usd('0.10');
    for (let i = 0; i < 1_000_000; i++) m += ten;
    expect(microsToUsd(m)).toBe('100000');
  });
});

describe('stop conditions (hand-computed)', () => {
  it('79.999999 is still NORMAL, 80 is WARNING (inclusive)', () => {
    expect(run([task(T0, '79.999999')]).state.guard.state).toBe('NORMAL');
    expect(run([task(T0, '79.999999'), task(T0 + 1, '0.000001')]).state.guard.state).toBe('WARNING');
  });
  it('unit near cap at exactly 0.9 x cap (45 of 50) warns, 44.99 does not', () => {
    expect(run([task(T0, '45')], emptyScope(T0), u).holds.map((h) => h.id)).toContain('unit_near_cap');
    expect(run([task(T0, '44.99')], emptyScope(T0), u).holds.map((h) => h.id)).not.toContain('unit_near_cap');
  });
  it('K-1 tasks at the unit cap do not stop, K do', () => {
    const wide = u;
    expect(run([task(T0, '50'), task(T0 + 1, '50')], emptyScope(T0), wide).state.guard.state).toBe('WARNING');
    const k = run([task(T0, '50'), task(T0 + 1, '50'), task(T0 + 2, '50')], emptyScope(T0), wide);
    expect(k.state.guard.state).toBe('HARD_STOP');
    expect(k.holds.find((h) => h.id === 'unit_cap_consecutive')).toMatchObject({ value: 3, threshold: 3, unit: 'count' });
  });
  it('a task under the cap resets the consecutive count', () => {
    const wide = u;
    const r = run([task(T0, '50'), task(T0 + 1, '50'), task(T0 + 2, '1'), task(T0 + 3, '50'), task(T0 + 4, '50')], emptyScope(T0), wide);
    expect(r.state.spend.consecutiveAtCap).toBe(2);
    expect(r.holds.map((h) => h.id)).not.toContain('unit_cap_consecutive');
  });
  it('a single op at 1.25 x unit cap is an emergency; just under is not', () => {
    expect(run([task(T0, '62.5')], emptyScope(T0), u).state.guard.state).toBe('EMERGENCY_STOP');
    expect(run([task(T0, '62.499999')], emptyScope(T0), u).state.guard.state).toBe('WARNING');
  });
  it('failure rate exactly 0.2 does not stop; above does, only once the day is at soft', () => {
    const evs = [task(T0, '40', { failed: true }), ...Array.from({ length: 4 }, (_, i) => task(T0 + 1 + i, '10'))];
    const at02 = run(evs); // 1/5 = 0.2, day 80
    expect(at02.holds.map((h) => h.id)).not.toContain('failure_burn');
    const above = run([...evs, task(T0 + 9, '1', { failed: true })]); // 2/6 > 0.2, day 81
    expect(above.holds.find((h) => h.id === 'failure_burn')).toMatchObject({ level: 'HARD_STOP', unit: 'ratio', threshold: 0.2 });
    const below = run([task(T0, '10', { failed: true }), task(T0 + 1, '10', { failed: true })]); // rate 1, day 20 < soft
    expect(below.state.guard.state).toBe('NORMAL');
  });
  it('day total resets at UTC midnight; the week keeps it', () => {
    const mid = Date.parse('2026-03-03T00:00:00Z');
    const r = run([task(mid - 1, '70'), task(mid, '20')]);
    expect(r.totals.dayMicros).toBe(usd(20));
    expect(r.totals.weekMicros).toBe(usd(90));
    expect(r.state.guard.state).toBe('NORMAL');
  });
  it('a late event for yesterday counts in the week and run, not today', () => {
    const mid = Date.parse('2026-03-03T00:00:00Z');
    let s = run([task(mid + H, '10')]).state;
    const r = evaluateTask(b, s, task(mid - H, '30'), mid + 2 * H);
    s = r.state;
    expect(r.totals.dayMicros).toBe(usd(10));
    expect(r.totals.weekMicros).toBe(usd(40));
    expect(r.totals.runMicros).toBe(usd(40));
  });
  it('the week window drops the day 7 days back exactly', () => {
    const d0 = Date.parse('2026-03-01T12:00:00Z');
    const s = run([task(d0, '70')]).state;
    expect(totalsOf(s.spend, d0 + 6 * 86_400_000).weekMicros).toBe(usd(70));
    expect(totalsOf(s.spend, d0 + 7 * 86_400_000).weekMicros).toBe(0);
  });
  it('run cap is cumulative across days and weeks', () => {
    const evs = Array.from({ length: 11 }, (_, i) => task(T0 + i * 86_400_000, '95'));
    const r = run(evs);
    expect(r.totals.runMicros).toBe(usd(1045));
    expect(r.holds.map((h) => h.id)).toContain('run_cap');
  });
  it('hard stops on 3 consecutive days escalate to emergency; 2 do not', () => {
    const wideRun = thresholdsOf({ ...bands, weekSoft: usd(9000), weekHard: usd(9500), runCap: usd(99999) });
    const two = run([task(T0, '100'), task(T0 + 86_400_000, '100')], emptyScope(T0), wideRun);
    expect(two.state.guard.state).toBe('HARD_STOP');
    const three = run([task(T0, '100'), task(T0 + 86_400_000, '100'), task(T0 + 2 * 86_400_000, '100')], emptyScope(T0), wideRun);
    expect(three.state.guard.state).toBe('EMERGENCY_STOP');
    expect(three.holds.map((h) => h.id)).toContain('hard_three_days');
  });
  it('every condition reports value, threshold and the top contributing component', () => {
    const r = run([task(T0, '30'), task(T0 + 1, '75', { gas: true })]);
    const dayHard = r.holds.find((h) => h.id === 'day_hard')!;
    expect(dayHard).toMatchObject({ value: usd(105), threshold: usd(100), topComponent: 'gas', metric: 'forge.cost.total.day_usd' });
  });
  it('storage burns pro rata through the live day and fully on a finished day', () => {
    const s = { ...emptyScope(T0, usd(24)) };
    const noon = Date.parse('2026-03-02T12:00:00Z');
    const r = evaluateTask(b, s, task(noon, '1'), noon);
    expect(r.totals.dayMicros).toBe(usd(13)); // 1 + 24 * 12/24
    expect(totalsOf(r.state.spend, noon + 86_400_000).weekMicros).toBe(usd(1 + 24 + 12)); // yesterday full + today half
  });
});

describe('latching and operator actions', () => {
  it('states escalate by themselves and do not come down when spend stops', () => {
    const r = run([task(T0, '100')]);
    expect(r.state.guard.state).toBe('HARD_STOP');
    const later = evaluateAt(b, r.state, T0 + 2 * 86_400_000);
    expect(later.state.guard.state).toBe('HARD_STOP');
    expect(later.holds).toEqual([]);
  });
  it('a WARNING stays until acknowledged, then clears once nothing warns', () => {
    const r = run([task(T0, '80')]);
    const nextDay = evaluateAt(b, r.state, T0 + 86_400_000);
    expect(nextDay.state.guard.state).toBe('WARNING');
    const ack = acknowledgeWarning(b, nextDay.state, T0 + 86_400_000);
    expect(ack.ok && ack.state.guard.state).toBe('NORMAL');
  });
  it('acknowledging a warning that still holds keeps WARNING, marked acknowledged', () => {
    const r = run([task(T0, '85')]);
    const ack = acknowledgeWarning(b, r.state, T0 + 1);
    expect(ack.ok && ack.state.guard).toMatchObject({ state: 'WARNING', acknowledged: true });
    expect(acknowledgeWarning(b, run([task(T0, '1')]).state, T0).ok).toBe(false);
  });
  it('lifting a hard stop waives its conditions; the emergency level above still fires', () => {
    const r = run([task(T0, '100')]);
    const lifted = liftStop(b, r.state, T0 + 1);
    expect(lifted.ok && lifted.state.guard.state).toBe('WARNING');
    if (!lifted.ok) return;
    const more = evaluateTask(b, lifted.state, task(T0 + 2, '5'), T0 + 2);
    expect(more.state.guard.state).toBe('WARNING');
    const over = evaluateTask(b, more.state, task(T0 + 3, '5'), T0 + 3);
    expect(over.state.guard.state).toBe('EMERGENCY_STOP');
    expect(over.state.guard.seq).toBe(lifted.state.guard.seq + 1);
  });
  it('a lift is refused when nothing is stopped', () => expect(liftStop(b, emptyScope(T0), T0)).toEqual({ ok: false, reason: 'not_stopped' }));
  it('the hourly rollup replaces live totals with the log and re-evaluates', () => {
    const s = run([task(T0, '10')]).state;
    const day = Math.floor(T0 / 86_400_000);
    const r = evaluateRollup(b, s, { days: [{ day, components: { ...zeroComponents(), compute: usd(101) }, opsMicros: usd(101), tasks: 3, failed: 0 }], run: { components: { ...zeroComponents(), compute: usd(101) }, totalMicros: usd(101), tasks: 3 } }, T0 + H);
    expect(r.totals.dayMicros).toBe(usd(101));
    expect(r.change).toEqual({ from: 'NORMAL', to: 'HARD_STOP' });
    expect(r.holds.find((h) => h.id === 'day_hard')?.topComponent).toBe('compute');
  });
});

describe('properties', () => {
  it('microsToUsd is exact for every safe integer (integer formatting agrees with decimal division)', () => {
    fc.assert(fc.property(fc.maxSafeInteger().chain((m) => fc.constantFrom(m, -m, m % 1_000_000, m - (m % 1_000_000))), (m) => microsToUsd(m) === new Decimal(m).dividedBy(1_000_000).toFixed()), { numRuns: 20_000 });
    expect([microsToUsd(-1), microsToUsd(1_000_000), microsToUsd(4_375_000), microsToUsd(-1_234_567)]).toEqual(['-0.000001', '1', '4.375', '-1.234567']);
  });
  it('usdToMicros of a plain decimal string equals decimal arithmetic (the integer fast path is exact)', () => {
    const plain = fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 999_999_999 }), fc.option(fc.stringMatching(/^\d{1,6}$/), { nil: undefined }));
    fc.assert(
      fc.property(plain, ([neg, whole, frac]) => {
        const text = `${neg ? '-' : ''}${whole}${frac === undefined ? '' : `.${frac}`}`;
        const want = new Decimal(text).times(1_000_000).toNumber();
        return usdToMicros(text) === (want === 0 ? 0 : want);
      }),
      { numRuns: 20_000 },
    );
    // Longer fractions and exponents still round half-even through decimal.js.
    expect([usdToMicros('0.0000005'), usdToMicros('0.0000015'), usdToMicros('1e-6'), usdToMicros(' 2.5 ')]).toEqual([0, 2, 1, 2_500_000]);
  });

  const ev = fc.record({
    offsetMs: fc.integer({ min: 0, max: 86_399_999 }),
    micros: fc.integer({ min: 0, max: 60_000_000 }),
    failed: fc.boolean(),
  });
  it('totals equal the sum of their operations for random streams', () => {
    fc.assert(
      fc.property(fc.array(ev, { minLength: 1, maxLength: 200 }), (evs) => {
        const day0 = Date.parse('2026-03-02T00:00:00Z');
        let s = emptyScope(day0);
        let sum = 0;
        for (const e of evs) {
          sum += e.micros;
          s = evaluateTask(b, s, { at: day0 + e.offsetMs, components: { ...zeroComponents(), llm: e.micros }, totalMicros: e.micros, failed: e.failed }, day0 + e.offsetMs).state;
        }
        const t = totalsOf(s.spend, day0 + 86_399_999);
        return t.dayMicros === sum && t.weekMicros === sum && t.runMicros === sum;
      }),
    );
  });
  it('the same events in any order within the window give the same totals and conditions', () => {
    fc.assert(
      fc.property(fc.array(ev, { minLength: 1, maxLength: 60 }), fc.integer(), (evs, seed) => {
        const day0 = Date.parse('2026-03-02T00:00:00Z');
        const end = day0 + 86_399_999;
        const fold = (list: typeof evs) => {
          let s = emptyScope(day0);
          for (const e of list) s = evaluateTask(b, s, { at: day0 + e.offsetMs, components: { ...zeroComponents(), gas: e.micros }, totalMicros: e.micros, failed: e.failed }, end).state;
          const r = evaluateAt(b, s, end);
          return { totals: r.totals, holds: r.holds.filter((h) => h.id !== 'unit_cap_consecutive').map((h) => h.id).sort() };
        };
        const shuffled = [...evs].sort((x, y) => ((x.micros * 31 + x.offsetMs + seed) % 97) - ((y.micros * 31 + y.offsetMs + seed) % 97));
        expect(fold(shuffled)).toEqual(fold(evs));
      }),
    );
  });
  it('no drift over a million events of random cents', () => {
    let s = emptyScope(T0);
    const wide = thresholdsOf({ daySoft: 1e14, dayHard: 2e14, weekSoft: 3e14, weekHard: 4e14, runCap: 5e14, unitCap: 1e14, k: 5 });
    let expected = 0n;
    let x = 12345;
    for (let i = 0; i < 1_000_000; i++) {
      x = (x * 1103515245 + 12345) % 2147483648;
      const m = (x % 100_000) * 10; // up to $1, whole cents of micros
      expected += BigInt(m);
      s = evaluateTask(wide, s, { at: T0, components: { ...zeroComponents(), rli: m }, totalMicros: m, failed: false }, T0).state;
    }
    expect(BigInt(totalsOf(s.spend, T0).runMicros)).toBe(expected);
  });
});
