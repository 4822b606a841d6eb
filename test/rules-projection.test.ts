import { describe, expect, it } from 'vitest';
import { parseAlertsConfig, projectedDayBreach } from '../alerts/index.ts';
import { guardView } from '../alerts/format.ts';
import { InProcessHaltBus, InProcessLedger, Guardrail, type AuditRecord } from '../guard/index.ts';
import {
  DAY_MS,
  acknowledgeWarning,
  dayOf,
  emptyScope,
  evaluateAt,
  evaluateTask,
  parseBandsConfig,
  projectedMicros,
  thresholdsOf,
  usdToMicros,
  zeroComponents,
  type ConditionHit,
  type ScopeState,
  type StateChange,
  type TaskOutcome,
} from '../rules/index.ts';
import { costEvent } from './helpers/api.ts';

// A projected breach (issue #22): a WARNING raised while a scope is still under its soft band when the rolling
// week's burn rate carries it to the hard band before the UTC day (day_projected) or the rolling week
// (week_projected) is out. The rate: the rolling week's spend over the time it spans (6 days + today so far).

const usd = usdToMicros;
const H = 3_600_000;
const TODAY = Date.parse('2026-03-10T00:00:00Z');
const b = thresholdsOf({ daySoft: usd(80), dayHard: usd(100), weekSoft: usd(400), weekHard: usd(500), runCap: usd(100_000), unitCap: usd(200), k: 5 });

function task(at: number, total: string): TaskOutcome {
  const m = usd(total);
  return { at, totalMicros: m, failed: false, components: { ...zeroComponents(), compute: m } };
}

/** A scope with the given totals (USD) on the days before today: index 1 = yesterday ... 6 = six days back. */
function withHistory(back: Record<number, string>): ScopeState {
  const s = emptyScope(TODAY - 7 * DAY_MS);
  const days = Object.entries(back).map(([n, v]) => {
    const m = usd(v);
    return { day: dayOf(TODAY) - Number(n), components: { ...zeroComponents(), compute: m }, opsMicros: m, tasks: 1, failed: 0 };
  });
  return { ...s, spend: { ...s.spend, days: days.sort((a, c) => c.day - a.day) } };
}

/** The rate's own arithmetic, independently in BigInt: total + floor(week x ahead / (6 days + elapsed)). */
function expected(totalUsd: string, weekUsd: string, elapsedMs: number, aheadMs: number): number {
  return usd(totalUsd) + Number((BigInt(usd(weekUsd)) * BigInt(aheadMs)) / BigInt(6 * DAY_MS + elapsedMs));
}

const ids = (holds: readonly ConditionHit[]) => holds.map((h) => h.id).sort();

describe('day_projected', () => {
  const sixDaysOf54 = { 1: '54', 2: '54', 3: '54', 4: '54', 5: '54', 6: '54' }; // 324: the week is under its soft band all along

  it('a scope under B_day_soft whose pace reaches B_day_hard by midnight gets the WARNING with the projected figure', () => {
    const at = TODAY + 12 * H;
    const r = evaluateTask(b, withHistory(sixDaysOf54), task(at, '70'), at);
    // day 70 + 394 x 12 h / 156 h = 100.307692...
    const want = expected('70', '394', 12 * H, 12 * H);
    expect(want).toBe(100_307_692);
    expect(r.holds).toEqual([
      { id: 'day_projected', level: 'WARNING', metric: 'forge.cost.total.day_usd', unit: 'usd_micros', value: want, threshold: usd(100), topComponent: 'compute' },
    ]);
    expect(r.state.guard.state).toBe('WARNING');
    expect(r.change).toEqual({ from: 'NORMAL', to: 'WARNING' });
    expect(r.totals.dayMicros).toBe(usd(70));
  });

  it('one below that pace raises nothing', () => {
    const at = TODAY + 12 * H;
    const r = evaluateTask(b, withHistory(sixDaysOf54), task(at, '60'), at); // 60 + 384 x 12 / 156 = 89.5
    expect(r.holds).toEqual([]);
    expect(r.state.guard.state).toBe('NORMAL');
  });

  it('nothing is projected in the first hour of the UTC day; at one hour it is', () => {
    const early = TODAY + H - 1;
    const r = evaluateTask(b, withHistory(sixDaysOf54), task(early, '70'), early);
    expect(r.holds).toEqual([]);
    expect(r.state.guard.state).toBe('NORMAL');
    const at = evaluateAt(b, r.state, TODAY + H);
    // $70 in the first hour on a $324 week also carries the week to 70 + 394 x 167 / 145 = 523.8 in 6 days.
    expect(ids(at.holds)).toEqual(['day_projected', 'week_projected']);
    expect(at.holds.find((h) => h.id === 'day_projected')!.value).toBe(expected('70', '394', H, 23 * H));
    expect(at.holds.find((h) => h.id === 'week_projected')!.value).toBe(expected('70', '394', H, 23 * H + 6 * DAY_MS));
  });

  it('once the day reaches B_day_soft, day_soft holds instead (a projection is raised before the band is crossed)', () => {
    const at = TODAY + 12 * H;
    const r = evaluateTask(b, withHistory(sixDaysOf54), task(at, '80'), at);
    expect(ids(r.holds)).toEqual(['day_soft', 'week_soft']);
  });

  it('the warning clears once acknowledged and the pace no longer projects a breach (the clock moved on)', () => {
    const at = TODAY + 12 * H;
    const r = evaluateTask(b, withHistory(sixDaysOf54), task(at, '70'), at);
    const ack = acknowledgeWarning(b, r.state, at + 60_000);
    expect(ack.ok && ack.state.guard.acknowledged).toBe(true);
    // At 23:00 the same spend projects 70 + 394 x 1 / 167 = 72.4: no longer a breach.
    const later = evaluateAt(b, ack.ok ? ack.state : r.state, TODAY + 23 * H);
    expect(later.holds).toEqual([]);
    expect(later.state.guard.state).toBe('NORMAL');
  });
});

describe('week_projected', () => {
  // The rolling week ends with each UTC day, when its oldest day leaves it. Three quiet days then three of
  // 120: the week is 380 (under soft) at 06:00 today; at its rate (380 over 150 h) it peaks at the end of
  // the 3rd day from now, just before the first 120 leaves: 380 + 380 x 90 / 150 = 608.
  const recent = { 1: '120', 2: '120', 3: '120' };

  it('a rolling week under B_week_soft whose pace takes it to B_week_hard gets the WARNING with its peak', () => {
    const at = TODAY + 6 * H;
    const r = evaluateTask(b, withHistory(recent), task(at, '20'), at);
    const want = expected('380', '380', 6 * H, 18 * H + 3 * DAY_MS);
    expect(want).toBe(usd(608));
    expect(r.holds).toEqual([
      { id: 'week_projected', level: 'WARNING', metric: 'forge.cost.total.week_usd', unit: 'usd_micros', value: want, threshold: usd(500), topComponent: 'compute' },
    ]);
    expect(r.state.guard.state).toBe('WARNING');
    // Read only to the end of today the week would be 425.6, under B_week_hard: the window slides on.
    expect(expected('380', '380', 6 * H, 18 * H)).toBeLessThan(usd(500));
  });

  it('one below that pace raises nothing', () => {
    const at = TODAY + 6 * H;
    const r = evaluateTask(b, withHistory({ 1: '80', 2: '80', 3: '80' }), task(at, '20'), at); // peak 260 + 260 x 90 / 150 = 416
    expect(r.holds).toEqual([]);
    expect(r.state.guard.state).toBe('NORMAL');
  });

  it('nothing in the first hour of the day', () => {
    const at = TODAY + 30 * 60_000;
    expect(evaluateTask(b, withHistory(recent), task(at, '20'), at).holds).toEqual([]);
  });

  it('a week at B_week_soft gets week_soft, not a projection', () => {
    const at = TODAY + 6 * H;
    expect(ids(evaluateTask(b, withHistory(recent), task(at, '40'), at).holds)).toEqual(['week_soft']);
  });
});

describe('the projection arithmetic', () => {
  it('is exact in integers beyond the doubles (BigInt), and equal to the doubles below 2^53', () => {
    // 9e14 micros ($900M) over 6 days + 1 h, carried 23 h: the product is far above 2^53.
    const big = projectedMicros(1, 900_000_000_000_000, 6 * DAY_MS + H, 23 * H);
    expect(BigInt(big)).toBe(1n + (900_000_000_000_000n * BigInt(23 * H)) / BigInt(6 * DAY_MS + H));
    for (const [spent, over, ahead] of [[7, 3, 10], [123_456_789, 7 * H + 13, 5 * H], [1, DAY_MS, DAY_MS - 1]] as const) {
      expect(projectedMicros(0, spent, over, ahead)).toBe(Number((BigInt(spent) * BigInt(ahead)) / BigInt(over)));
    }
  });

  it("the anomaly's day-pace projection is the same function at the day's own rate", () => {
    const now = TODAY + 6 * H;
    // 30 in 6 h projects 120 by midnight.
    expect(projectedDayBreach({ dayMicros: usd(30), daySoftMicros: usd(80), dayHardMicros: usd(100), now })).toEqual({ projectedMicros: usd(120) });
    expect(projectedDayBreach({ dayMicros: usd(20), daySoftMicros: usd(80), dayHardMicros: usd(100), now })).toBeUndefined();
    expect(projectedDayBreach({ dayMicros: usd(30), daySoftMicros: usd(80), dayHardMicros: usd(100), now: TODAY + H - 1 })).toBeUndefined();
  });
});

describe('through the guard', () => {
  it('the projection is a state transition like any condition: announced with its hit, audited, and alerted as a WARNING', async () => {
    const clock = { now: TODAY - 6 * DAY_MS + 12 * H };
    const changes: StateChange[] = [];
    const audits: AuditRecord[] = [];
    const bands = parseBandsConfig('global:\n  B_day_soft: 800000\n  B_day_hard: 1000000\n  B_week_soft: 4000000\n  B_week_hard: 5000000\n  B_run_cap: 90000000\n  B_unit_cap: 900000\n' +
      'tenants:\n  pace:\n    B_day_soft: 80\n    B_day_hard: 100\n    B_week_soft: 400\n    B_week_hard: 500\n    B_run_cap: 100000\n    B_unit_cap: 200\n');
    const g = new Guardrail({
      bands, ledger: new InProcessLedger(), bus: new InProcessHaltBus(), now: () => clock.now, onChange: (c) => changes.push(c),
      audit: async (r) => void audits.push(r), onError: (e) => { throw e; }, reservationTtlMs: 60_000,
    });
    try {
      // Six days of 54 at noon: never a warning on the way (the rate is the week's, not the morning's).
      for (let n = 6; n >= 1; n--) {
        clock.now = TODAY - n * DAY_MS + 12 * H;
        await g.ingest([costEvent({ tenantId: 'pace', totalMicros: usd(54), eventTime: clock.now })]);
      }
      await g.drain();
      expect(g.effectiveState('tenant:pace')).toBe('NORMAL');
      clock.now = TODAY + 12 * H;
      await g.ingest([costEvent({ tenantId: 'pace', totalMicros: usd(70), eventTime: clock.now })]);
      await g.drain();
      expect(g.effectiveState('tenant:pace')).toBe('WARNING');
      const change = changes.find((c) => c.scope === 'tenant:pace' && c.state === 'WARNING')!;
      expect(change.holds.map((h) => [h.id, h.value])).toEqual([['day_projected', 100_307_692]]);
      expect(change.reason).toContain('day_projected');
      expect(audits.some((a) => a.scope === 'tenant:pace' && a.state === 'WARNING' && JSON.stringify(a.details).includes('day_projected'))).toBe(true);
      const view = guardView(change, parseAlertsConfig({ source: 'forge', links: { dashboardUrl: 'http://d/{scope}', acknowledgeUrl: 'http://a/{scope}' }, destinations: {}, routes: {} }, {}));
      expect(view).toMatchObject({ state: 'WARNING', severity: 'warning', condition: 'day_projected' });
      expect(view.summary).toContain('$100.307692 (threshold $100)');
      expect(view.facts).toContainEqual({ label: 'Projected value', value: '$100.307692' });
    } finally {
      g.close();
    }
  });
});
