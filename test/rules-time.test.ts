import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  dayFromLabel,
  dayOf,
  emptyScope,
  evaluateAt,
  evaluateRollup,
  evaluateTask,
  liftStop,
  thresholdsOf,
  totalsOf,
  usdToMicros,
  waivedAt,
  zeroComponents,
  type DaySpend,
  type Evaluation,
  type ScopeState,
  type TaskOutcome,
} from '../rules/index.ts';

/**
 * The time readings of the model (ARCHITECTURE.md, "Readings of the model"): late events, hard-stop days
 * as a set, what records a hard day, day waivers, and the hourly recompute agreeing with the per-task path.
 * Amounts and dates are written out; the expected values are computed by hand in the comments.
 */

const usd = usdToMicros;
const at = Date.parse;
const day = dayFromLabel;
/** Day bands 80 / 100 / 110, week and run far away, unit cap 200, K = 3. */
const b = thresholdsOf({ daySoft: usd(80), dayHard: usd(100), weekSoft: usd(5000), weekHard: usd(6000), runCap: usd(100_000), unitCap: usd(200), k: 3 });

function task(when: string, total: string | number, failed = false): TaskOutcome {
  const m = usd(total);
  return { at: at(when), components: { ...zeroComponents(), compute: m }, totalMicros: m, failed };
}

/** Live path: each task evaluated when it finalized, unless `now` says when it arrived. */
function feed(s: ScopeState, events: Array<TaskOutcome | [TaskOutcome, string]>): Evaluation {
  let r: Evaluation | undefined;
  for (const e of events) {
    const [t, now] = Array.isArray(e) ? [e[0], at(e[1])] : [e, e.at];
    r = evaluateTask(b, r ? r.state : s, t, now);
  }
  return r!;
}

const ids = (r: Evaluation) => r.holds.map((h) => `${h.level[0]}:${h.id}`).sort();

describe('(a) a late event is checked against the totals of the day it was finalized on', () => {
  it('a late event for yesterday crossing yesterday 100 USD hard band, today at 10 USD: HARD_STOP on day_hard of yesterday', () => {
    // 2026-03-20: 95 USD (WARNING). 2026-03-21: 10 USD. Then, at 02:00 on the 21st, a 5 USD event finalized
    // at 2026-03-20T23:59:59Z arrives: the 20th is at 100 = B_day_hard.
    const before = feed(emptyScope(at('2026-03-20T12:00:00Z')), [task('2026-03-20T12:00:00Z', 95), task('2026-03-21T01:00:00Z', 10)]);
    expect(before.state.guard.state).toBe('WARNING');
    expect(before.holds).toEqual([]);
    const r = evaluateTask(b, before.state, task('2026-03-20T23:59:59Z', 5), at('2026-03-21T02:00:00Z'));
    expect(r.state.guard.state).toBe('HARD_STOP');
    expect(r.change).toEqual({ from: 'WARNING', to: 'HARD_STOP' });
    expect(ids(r)).toEqual(['H:day_hard', 'W:day_soft']);
    expect(r.holds.find((h) => h.id === 'day_hard')).toMatchObject({ value: usd(100), threshold: usd(100), day: day('2026-03-20') });
    // Totals stay as of now: today 10, the week 95 + 10 + 5 = 110, the run 110.
    expect(r.totals).toMatchObject({ dayMicros: usd(10), weekMicros: usd(110), runMicros: usd(110) });
    // The late day's own spend raised the hard stop: the 20th is a hard day.
    expect(r.state.spend.hardDays).toEqual([day('2026-03-20')]);
  });

  it('a finished day counts its whole storage: 70 + 6 USD of operations + 24 USD of storage = 100', () => {
    // Cost_storage_day 24 USD. On 2026-03-20 at 12:00 the day is 70 + 12 (half the storage) = 82: WARNING.
    const s = emptyScope(at('2026-03-20T12:00:00Z'), usd(24));
    const first = evaluateTask(b, s, task('2026-03-20T12:00:00Z', 70), at('2026-03-20T12:00:00Z'));
    expect(first.totals.dayMicros).toBe(usd(82));
    // 2026-03-21T06:00: today 1 USD + 6 USD of storage (a quarter day) = 7.
    const today = evaluateTask(b, first.state, task('2026-03-21T06:00:00Z', 1), at('2026-03-21T06:00:00Z'));
    expect(today.totals.dayMicros).toBe(usd(7));
    // A late 6 USD for the 20th: 76 + 24 = 100 on the 20th.
    const r = evaluateTask(b, today.state, task('2026-03-20T20:00:00Z', 6), at('2026-03-21T06:00:00Z'));
    expect(r.state.guard.state).toBe('HARD_STOP');
    expect(r.holds.find((h) => h.id === 'day_hard')).toMatchObject({ value: usd(100), day: day('2026-03-20') });
    expect(r.totals.dayMicros).toBe(usd(7));
  });

  it('a late event that keeps its day under the hard band raises nothing more', () => {
    const r = feed(emptyScope(at('2026-03-20T12:00:00Z')), [task('2026-03-20T12:00:00Z', 90), task('2026-03-21T01:00:00Z', 10), [task('2026-03-20T22:00:00Z', 9.99), '2026-03-21T02:00:00Z']]);
    // The 20th is at 99.99: day_soft for the 20th only (today is at 10).
    expect(ids(r)).toEqual(['W:day_soft']);
    expect(r.holds[0]).toMatchObject({ value: usd(99.99), day: day('2026-03-20') });
    expect(r.state.guard.state).toBe('WARNING');
    expect(r.state.spend.hardDays).toEqual([]);
  });

  it('a late failed event: the failure rate of its own day (2 of 9 > 0.2 with the day at 90) stops the scope', () => {
    // 2026-03-20: 8 tasks of 10 USD, one failed (1/8). Late, on the 21st: a failed 10 USD task of the 20th,
    // 2 failed of 9 = 0.222 > 0.2 with the day at 90 >= 80.
    const evs = Array.from({ length: 8 }, (_, i) => task(`2026-03-20T1${i}:00:00Z`, 10, i === 0));
    const before = feed(emptyScope(at('2026-03-20T10:00:00Z')), evs);
    expect(ids(before)).toEqual(['W:day_soft']);
    const r = evaluateTask(b, before.state, task('2026-03-20T23:00:00Z', 10, true), at('2026-03-21T03:00:00Z'));
    expect(ids(r)).toEqual(['H:failure_burn', 'W:day_soft']);
    expect(r.holds.find((h) => h.id === 'failure_burn')).toMatchObject({ value: 2 / 9, day: day('2026-03-20') });
    expect(r.state.guard.state).toBe('HARD_STOP');
  });
});

describe('(b) hard-stop days are a set of dates', () => {
  it('hard days recorded out of order (a late event fills the gap day) escalate to EMERGENCY_STOP on 3 consecutive days', () => {
    // 20th: 100 (hard). 21st: 50. 22nd: 100 (hard). Then, on the 22nd at 13:00, a late 50 USD event of the 21st
    // brings the 21st to 100: the 20th, 21st and 22nd are hard days.
    const r1 = feed(emptyScope(at('2026-03-20T12:00:00Z')), [task('2026-03-20T12:00:00Z', 100), task('2026-03-21T12:00:00Z', 50), task('2026-03-22T12:00:00Z', 100)]);
    expect(r1.state.guard.state).toBe('HARD_STOP');
    expect(r1.state.spend.hardDays).toEqual([day('2026-03-20'), day('2026-03-22')]);
    expect(ids(r1)).toEqual(['H:day_hard', 'W:day_soft']);
    const r2 = evaluateTask(b, r1.state, task('2026-03-21T23:00:00Z', 50), at('2026-03-22T13:00:00Z'));
    expect(r2.state.spend.hardDays).toEqual([day('2026-03-20'), day('2026-03-21'), day('2026-03-22')]);
    expect(r2.state.guard.state).toBe('EMERGENCY_STOP');
    // Today's 100 and the 21st's 100 both hold; hard_three_days escalates.
    expect(ids(r2)).toEqual(['E:hard_three_days', 'H:day_hard', 'H:day_hard', 'W:day_soft', 'W:day_soft']);
    expect(r2.holds.filter((h) => h.id === 'day_hard').map((h) => h.day)).toEqual([day('2026-03-22'), day('2026-03-21')]);
  });

  it('a late event completing the 3 days before today escalates too (18th, 19th late, 20th; today the 21st is quiet)', () => {
    const r1 = feed(emptyScope(at('2026-03-18T12:00:00Z')), [task('2026-03-18T12:00:00Z', 100), task('2026-03-19T12:00:00Z', 60), task('2026-03-20T12:00:00Z', 100), task('2026-03-21T08:00:00Z', 5)]);
    expect(r1.state.spend.hardDays).toEqual([day('2026-03-18'), day('2026-03-20')]);
    expect(r1.state.guard.state).toBe('HARD_STOP');
    const r2 = evaluateTask(b, r1.state, task('2026-03-19T18:00:00Z', 40), at('2026-03-21T09:00:00Z'));
    expect(r2.state.spend.hardDays).toEqual([day('2026-03-18'), day('2026-03-19'), day('2026-03-20')]);
    expect(r2.state.guard.state).toBe('EMERGENCY_STOP');
    expect(ids(r2)).toEqual(['E:hard_three_days', 'H:day_hard', 'W:day_soft']);
  });

  it('the set stays bounded: a hard day 9 days before the newest is dropped', () => {
    const r = feed(emptyScope(at('2026-03-01T12:00:00Z')), [task('2026-03-01T12:00:00Z', 100), task('2026-03-02T12:00:00Z', 100), task('2026-03-10T12:00:00Z', 100)]);
    // Newest is the 10th: the 3rd .. 10th are kept, so the 1st and 2nd are dropped.
    expect(r.state.spend.hardDays).toEqual([day('2026-03-10')]);
    const r2 = feed(emptyScope(at('2026-03-03T12:00:00Z')), [task('2026-03-03T12:00:00Z', 100), task('2026-03-10T12:00:00Z', 100)]);
    expect(r2.state.spend.hardDays).toEqual([day('2026-03-03'), day('2026-03-10')]);
  });

  it('the set survives JSON (it is persisted and published as part of the state)', () => {
    const r1 = feed(emptyScope(at('2026-03-20T12:00:00Z')), [task('2026-03-20T12:00:00Z', 100), task('2026-03-22T12:00:00Z', 100)]);
    const copy = JSON.parse(JSON.stringify(r1.state)) as ScopeState;
    const late = task('2026-03-21T12:00:00Z', 100);
    expect(evaluateTask(b, copy, late, at('2026-03-22T13:00:00Z'))).toEqual(evaluateTask(b, r1.state, late, at('2026-03-22T13:00:00Z')));
  });
});

describe('(c) a hard day is recorded only by that day own spend', () => {
  /** Unit cap 50, K = 3; day, week and run far away. */
  const u = thresholdsOf({ daySoft: usd(900), dayHard: usd(1000), weekSoft: usd(4000), weekHard: usd(5000), runCap: usd(9000), unitCap: usd(50), k: 3 });

  it('evaluateAt on a new day with a K-streak carried over holds the condition but records no hard day', () => {
    // 2026-03-20: three tasks of 50 USD (the unit cap): unit_cap_consecutive, HARD_STOP, the 20th is hard.
    let s = emptyScope(at('2026-03-20T10:00:00Z'));
    for (const t of ['10:00', '10:01', '10:02']) s = evaluateTask(u, s, task(`2026-03-20T${t}:00Z`, 50), at(`2026-03-20T${t}:00Z`)).state;
    expect(s.guard.state).toBe('HARD_STOP');
    expect(s.spend.hardDays).toEqual([day('2026-03-20')]);
    // The hourly job on the 21st and the 22nd: the streak (3) still holds, but neither day spent anything.
    const d21 = evaluateAt(u, s, at('2026-03-21T00:30:00Z'));
    expect(d21.holds.map((h) => h.id)).toEqual(['unit_cap_consecutive']);
    expect(d21.state.spend.hardDays).toEqual([day('2026-03-20')]);
    const d22 = evaluateAt(u, d21.state, at('2026-03-22T00:30:00Z'));
    expect(d22.state.spend.hardDays).toEqual([day('2026-03-20')]);
    expect(d22.state.guard.state).toBe('HARD_STOP');
    expect(d22.holds.map((h) => h.id)).not.toContain('hard_three_days');
    // The same through the hourly recompute (log: 150 USD on the 20th).
    const fromLog = { days: [{ day: day('2026-03-20'), components: { ...zeroComponents(), compute: usd(150) }, opsMicros: usd(150), tasks: 3, failed: 0 }], run: { components: { ...zeroComponents(), compute: usd(150) }, totalMicros: usd(150), tasks: 3 } };
    const roll = evaluateRollup(u, d22.state, fromLog, at('2026-03-23T00:30:00Z'));
    expect(roll.state.spend.hardDays).toEqual([day('2026-03-20')]);
    expect(roll.state.guard.state).toBe('HARD_STOP');
  });

  it('a task at the cap on the next day, with the streak going on, records that day (its own spend raised it)', () => {
    let s = emptyScope(at('2026-03-20T10:00:00Z'));
    for (const t of ['10:00', '10:01', '10:02']) s = evaluateTask(u, s, task(`2026-03-20T${t}:00Z`, 50), at(`2026-03-20T${t}:00Z`)).state;
    const r = evaluateTask(u, s, task('2026-03-21T09:00:00Z', 50), at('2026-03-21T09:00:00Z'));
    expect(r.state.spend.hardDays).toEqual([day('2026-03-20'), day('2026-03-21')]);
  });

  it("the hourly recompute records today when today's own totals (101 USD in the log) cross the hard band", () => {
    const s = feed(emptyScope(at('2026-03-20T09:00:00Z')), [task('2026-03-20T09:00:00Z', 10)]).state;
    const fromLog = { days: [{ day: day('2026-03-20'), components: { ...zeroComponents(), gas: usd(101) }, opsMicros: usd(101), tasks: 2, failed: 0 }], run: { components: { ...zeroComponents(), gas: usd(101) }, totalMicros: usd(101), tasks: 2 } };
    const r = evaluateRollup(b, s, fromLog, at('2026-03-20T10:00:00Z'));
    expect(r.state.guard.state).toBe('HARD_STOP');
    expect(r.state.spend.hardDays).toEqual([day('2026-03-20')]);
  });

  it('a week hard band carried into a quiet day records nothing; two quiet days keep EMERGENCY_STOP away', () => {
    // Week hard at 250: 20th 100, 21st 100, 22nd 60 -> week 260 >= 250 on the 22nd (a task that day: hard day).
    const w = thresholdsOf({ daySoft: usd(800), dayHard: usd(1000), weekSoft: usd(200), weekHard: usd(250), runCap: usd(9000), unitCap: usd(500), k: 5 });
    let s = emptyScope(at('2026-03-20T12:00:00Z'));
    for (const [when, amount] of [['2026-03-20T12:00:00Z', 100], ['2026-03-21T12:00:00Z', 100], ['2026-03-22T12:00:00Z', 60]] as const) {
      s = evaluateTask(w, s, task(when, amount), at(when)).state;
    }
    expect(s.guard.state).toBe('HARD_STOP');
    expect(s.spend.hardDays).toEqual([day('2026-03-22')]);
    // The 23rd and 24th: the week (still 260) holds week_hard at the hourly runs, but those days spent nothing.
    const d23 = evaluateAt(w, s, at('2026-03-23T05:00:00Z'));
    const d24 = evaluateAt(w, d23.state, at('2026-03-24T05:00:00Z'));
    expect(d24.holds.map((h) => h.id)).toEqual(['week_soft', 'week_hard']);
    expect(d24.state.spend.hardDays).toEqual([day('2026-03-22')]);
    expect(d24.state.guard.state).toBe('HARD_STOP');
  });
});

describe('(d) a waiver of a day condition ends with its UTC day', () => {
  it('a lift of day_hard on the 20th; the 21st crossing 100 again is HARD_STOP again', () => {
    const r = feed(emptyScope(at('2026-03-20T12:00:00Z')), [task('2026-03-20T12:00:00Z', 100)]);
    expect(r.state.guard.state).toBe('HARD_STOP');
    const lifted = liftStop(b, r.state, at('2026-03-20T13:00:00Z'));
    if (!lifted.ok) throw new Error('lift refused');
    // day_soft (a warning) still holds.
    expect(lifted.state.guard).toMatchObject({ state: 'WARNING', waived: ['day_hard'], dayWaivers: [{ id: 'day_hard', day: day('2026-03-20') }] });
    // More spend on the 20th under the emergency level: still waived (105 < 110).
    const more = evaluateTask(b, lifted.state, task('2026-03-20T14:00:00Z', 5), at('2026-03-20T14:00:00Z'));
    expect(more.state.guard.state).toBe('WARNING');
    // The 21st: 100 USD crosses the 21st's hard band, which no waiver covers.
    const next = evaluateTask(b, more.state, task('2026-03-21T10:00:00Z', 100), at('2026-03-21T10:00:00Z'));
    expect(next.change).toEqual({ from: 'WARNING', to: 'HARD_STOP' });
    expect(next.holds.find((h) => h.id === 'day_hard')).toMatchObject({ value: usd(100), day: day('2026-03-21') });
    // The 20th's waiver is no longer in force today.
    expect(next.state.guard.waived).toEqual([]);
    // Between evaluations, waivedAt reads the stored waivers at a given time: day_hard on the 20th only.
    expect(waivedAt(more.state.guard, at('2026-03-20T23:59:59Z'))).toEqual(['day_hard']);
    expect(waivedAt(more.state.guard, at('2026-03-21T00:00:00Z'))).toEqual([]);
  });

  it('a day waiver lapses once its band is raised above the spend: crossing the new band the same day stops again', () => {
    const r = feed(emptyScope(at('2026-03-20T12:00:00Z')), [task('2026-03-20T12:00:00Z', 100)]);
    const lifted = liftStop(b, r.state, at('2026-03-20T13:00:00Z'));
    if (!lifted.ok) throw new Error('lift refused');
    // Finance raises the day bands to 150 / 200 (emergency 220): at 100 nothing holds, the waiver lapses.
    const raised = thresholdsOf({ daySoft: usd(150), dayHard: usd(200), weekSoft: usd(5000), weekHard: usd(6000), runCap: usd(100_000), unitCap: usd(200), k: 3 });
    const quiet = evaluateAt(raised, lifted.state, at('2026-03-20T13:30:00Z'));
    expect(quiet.state.guard.dayWaivers).toEqual([]);
    // 100 more the same day: 200 >= the new 200 hard band, and no waiver covers it.
    const again = evaluateTask(raised, quiet.state, task('2026-03-20T14:00:00Z', 100), at('2026-03-20T14:00:00Z'));
    expect(again.state.guard.state).toBe('HARD_STOP');
  });

  it("a late event for the waived day does not stop the scope again; the waiver also covers an earlier day's late breach", () => {
    // Day 20: 95, day 21: 10; late 5 for the 20th -> HARD_STOP (the 20th at 100). Lifted on the 21st.
    const r = feed(emptyScope(at('2026-03-20T12:00:00Z')), [task('2026-03-20T12:00:00Z', 95), task('2026-03-21T01:00:00Z', 10), [task('2026-03-20T23:00:00Z', 5), '2026-03-21T02:00:00Z']]);
    expect(r.state.guard.state).toBe('HARD_STOP');
    const lifted = liftStop(b, r.state, at('2026-03-21T03:00:00Z'));
    if (!lifted.ok) throw new Error('lift refused');
    // Nothing holds today (10 USD): the scope goes to NORMAL; the waiver names the 20th.
    expect(lifted.state.guard).toMatchObject({ state: 'NORMAL', waived: [], dayWaivers: [{ id: 'day_hard', day: day('2026-03-20') }] });
    // Another late 4 USD for the 20th (104): covered by the waiver for the 20th.
    const late = evaluateTask(b, lifted.state, task('2026-03-20T23:30:00Z', 4), at('2026-03-21T04:00:00Z'));
    expect(late.holds.find((h) => h.id === 'day_hard')).toMatchObject({ value: usd(104), day: day('2026-03-20') });
    // day_soft of the 20th (a warning) was never waived.
    expect(late.state.guard.state).toBe('WARNING');
  });

  it('a waiver of a condition that is not a day condition keeps its rule: it lasts while it holds, across days', () => {
    // Run cap 150: 20th 100, 21st 60 -> run 160: HARD_STOP on run_cap. Lifted; the 22nd spends 10 (run 170): still waived.
    const rc = thresholdsOf({ daySoft: usd(800), dayHard: usd(1000), weekSoft: usd(5000), weekHard: usd(6000), runCap: usd(150), unitCap: usd(500), k: 5 });
    let s = emptyScope(at('2026-03-20T12:00:00Z'));
    s = evaluateTask(rc, s, task('2026-03-20T12:00:00Z', 100), at('2026-03-20T12:00:00Z')).state;
    s = evaluateTask(rc, s, task('2026-03-21T12:00:00Z', 60), at('2026-03-21T12:00:00Z')).state;
    expect(s.guard.state).toBe('HARD_STOP');
    const lifted = liftStop(rc, s, at('2026-03-21T13:00:00Z'));
    if (!lifted.ok) throw new Error('lift refused');
    expect(lifted.state.guard).toMatchObject({ state: 'NORMAL', waived: ['run_cap'] });
    const r = evaluateTask(rc, lifted.state, task('2026-03-22T12:00:00Z', 10), at('2026-03-22T12:00:00Z'));
    expect(r.holds.map((h) => h.id)).toEqual(['run_cap']);
    expect(r.state.guard.state).toBe('NORMAL');
    expect(r.state.guard.waived).toEqual(['run_cap']);
  });

  it('waivers survive JSON: the lifted state round-trips and evaluates the same', () => {
    const r = feed(emptyScope(at('2026-03-20T12:00:00Z')), [task('2026-03-20T12:00:00Z', 100)]);
    const lifted = liftStop(b, r.state, at('2026-03-20T13:00:00Z'));
    if (!lifted.ok) throw new Error('lift refused');
    const copy = JSON.parse(JSON.stringify(lifted.state)) as ScopeState;
    expect(copy).toEqual(lifted.state);
    const t = task('2026-03-20T14:00:00Z', 5);
    expect(evaluateTask(b, copy, t, t.at)).toEqual(evaluateTask(b, lifted.state, t, t.at));
  });
});

describe('(e) the hourly recompute keeps storage in the run as the per-task path does', () => {
  /** Bands nothing reaches. */
  const wide = thresholdsOf({ daySoft: 1e14, dayHard: 2e14, weekSoft: 3e14, weekHard: 4e14, runCap: 5e14, unitCap: 1e14, k: 5 });

  it('10 days of one 1 USD task with 2 USD a day of storage: run 29.5 USD both ways at 2026-03-10T18:00', () => {
    const storage = usd(2);
    let s = emptyScope(at('2026-03-01T12:00:00Z'), storage);
    const days: DaySpend[] = [];
    for (let d = 1; d <= 10; d++) {
      const when = `2026-03-${String(d).padStart(2, '0')}T12:00:00Z`;
      s = evaluateTask(wide, s, task(when, 1), at(when)).state;
      days.push({ day: dayOf(at(when)), components: { ...zeroComponents(), compute: usd(1) }, opsMicros: usd(1), tasks: 1, failed: 0 });
    }
    const now = at('2026-03-10T18:00:00Z');
    // Run: 10 USD of operations + 9 finished days of storage (18) + three quarters of today's (1.5) = 29.5.
    // Day: 1 + 1.5 = 2.5. Week (the 4th .. 10th): 7 + 6 x 2 + 1.5 = 20.5.
    const live = totalsOf(s.spend, now);
    expect(live).toMatchObject({ runMicros: usd(29.5), dayMicros: usd(2.5), weekMicros: usd(20.5) });
    const run = { components: { ...zeroComponents(), compute: usd(10) }, totalMicros: usd(10), tasks: 10 };
    const roll = evaluateRollup(wide, emptyScope(now, storage), { days, run }, now);
    expect(roll.totals).toEqual(live);
    expect(roll.totals.runComponents.storage).toBe(usd(19.5));
  });

  const opArb = fc.record({
    day: fc.integer({ min: 0, max: 20 }),
    ms: fc.integer({ min: 0, max: 86_399_999 }),
    rli: fc.integer({ min: 0, max: 5_000_000 }),
    gas: fc.integer({ min: 0, max: 5_000_000 }),
    llm: fc.integer({ min: 0, max: 5_000_000 }),
    storageShare: fc.integer({ min: 0, max: 1_000_000 }),
    failed: fc.boolean(),
    /** Arrive before the previous event (a late event, at most one event back). */
    swap: fc.boolean(),
  });

  it('property: evaluateTask over a stream and evaluateRollup over its day buckets give identical totals (storage > 0, > 8 days)', () => {
    const day0 = at('2026-03-01T00:00:00Z');
    fc.assert(
      fc.property(
        fc.array(opArb, { minLength: 1, maxLength: 80 }),
        fc.integer({ min: 9, max: 20 }),
        fc.integer({ min: 1, max: 10_000_000 }),
        fc.integer({ min: 0, max: 3 * 86_400_000 }),
        (ops, lastDay, storageDay, after) => {
          // Spread over more than 8 days: one event on day 0 and one on lastDay >= 9.
          const all = [{ ...ops[0]!, day: 0 }, ...ops.slice(1), { ...ops[0]!, day: lastDay, swap: false }];
          const tasks: TaskOutcome[] = all
            .map((o) => {
              const components = { ...zeroComponents(), rli: o.rli, gas: o.gas, storage: o.storageShare, llm: o.llm };
              return { at: day0 + o.day * 86_400_000 + o.ms, components, totalMicros: o.rli + o.gas + o.llm + o.storageShare, failed: o.failed };
            })
            .sort((x, y) => x.at - y.at);
          // Late arrivals: swap some neighbours (the later one is processed first), never twice in a row, so an
          // event is at most one behind the newest seen and its day is still in the kept window.
          for (let i = 1; i < tasks.length; i++) {
            if (!all[i]!.swap) continue;
            [tasks[i - 1], tasks[i]] = [tasks[i]!, tasks[i - 1]!];
            i++;
          }
          const maxAt = Math.max(...tasks.map((t) => t.at));
          const now = maxAt + after;
          let s = emptyScope(day0, storageDay);
          let seen = 0;
          for (const t of tasks) {
            seen = Math.max(seen, t.at);
            s = evaluateTask(wide, s, t, seen).state;
          }
          // The log's view: every day with activity, oldest to newest, storage excluded; the run, operations only.
          const byDay = new Map<number, DaySpend>();
          const run = { components: zeroComponents(), totalMicros: 0, tasks: 0 };
          for (const t of tasks) {
            const d = dayOf(t.at);
            const cur = byDay.get(d) ?? { day: d, components: zeroComponents(), opsMicros: 0, tasks: 0, failed: 0 };
            const ops = t.components.rli + t.components.gas + t.components.llm;
            byDay.set(d, {
              day: d,
              components: { ...cur.components, rli: cur.components.rli + t.components.rli, gas: cur.components.gas + t.components.gas, llm: cur.components.llm + t.components.llm },
              opsMicros: cur.opsMicros + ops,
              tasks: cur.tasks + 1,
              failed: cur.failed + (t.failed ? 1 : 0),
            });
            run.components.rli += t.components.rli;
            run.components.gas += t.components.gas;
            run.components.llm += t.components.llm;
            run.totalMicros += ops;
            run.tasks += 1;
          }
          const days = [...byDay.values()].sort((x, y) => x.day - y.day);
          const roll = evaluateRollup(wide, emptyScope(day0, storageDay), { days, run }, now);
          expect(roll.totals).toEqual(totalsOf(s.spend, now));
          expect(totalsOf(roll.state.spend, now)).toEqual(totalsOf(s.spend, now));
          expect(roll.state.spend.run).toEqual(s.spend.run);
        },
      ),
      { numRuns: 300 },
    );
  });
});
