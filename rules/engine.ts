import type { Thresholds } from './bands.ts';
import { addComponentsInto, addOperationComponents, operationSum, topComponent, zeroComponents, type Component, type ComponentMicros } from './cost-model.ts';
import type { Micros } from './money.ts';
import { maxState, stateRank, type ConditionHit, type ConditionId, type ConditionLevel, type DayConditionId, type DayWaiver, type GuardState, type GuardStatus } from './states.ts';

/**
 * The stop-condition engine: pure functions of (bands, spend state, event, now). No clock, no I/O.
 * State is derived from totals; the guard only latches (escalates by itself, comes down by an operator).
 */

export const DAY_MS = 86_400_000;
/** Day buckets kept per scope: today and the 6 days before make the rolling week; one more for rollover. */
export const DAYS_KEPT = 8;
/**
 * How far back hard-stop days and day waivers are kept: the newest day and the 7 before it. Three
 * consecutive days need only 3, but a late event may fill a gap up to a week back.
 */
export const HARD_DAYS_SPAN = 8;

/** Conditions that read one UTC day's totals. Their waiver covers that day only. */

export function isDayCondition(id: ConditionId): id is DayConditionId {
  return id === 'day_soft' || id === 'day_hard' || id === 'day_emergency' || id === 'failure_burn';
}

/**
 * Projected breaches (day_projected, week_projected) are read only once this much of the UTC day has
 * passed: a burn rate taken from the first minutes of a day fires wildly.
 */
export const PROJECTION_FROM_MS = 3_600_000;
/** The burn rate of a projected breach is the rolling week's: its spend over 6 full days and today so far. */
const RATE_WINDOW_MS = 6 * DAY_MS;

/**
 * A total carried forward at a burn rate: `totalMicros` + `spentMicros` x `aheadMs` / `overMs` (the rate
 * is spentMicros per overMs), rounded down to a whole micro-dollar, exact in integers (BigInt when the
 * product leaves the doubles' exact range). Times in whole milliseconds, overMs > 0.
 */
export function projectedMicros(totalMicros: Micros, spentMicros: Micros, overMs: number, aheadMs: number): Micros {
  const ahead = Math.floor(aheadMs);
  const over = Math.ceil(overMs);
  const product = spentMicros * ahead;
  // Below 2^53 the product is exact and the division's floor too (quotient x divisor stays below 2^53).
  if (product <= Number.MAX_SAFE_INTEGER) return totalMicros + Math.floor(product / over);
  return totalMicros + Number((BigInt(spentMicros) * BigInt(ahead)) / BigInt(over));
}

/** UTC day number (days since the epoch). */
export function dayOf(ms: number): number {
  return Math.floor(ms / DAY_MS);
}

export function dayLabel(day: number): string {
  return new Date(day * DAY_MS).toISOString().slice(0, 10);
}

export function dayFromLabel(label: string): number {
  return dayOf(Date.parse(`${label}T00:00:00Z`));
}

/** One UTC day of a scope. Components exclude storage, which burns by the day (see storageDayMicros). */
export interface DaySpend {
  day: number;
  components: ComponentMicros;
  /** Sum of the components (storage excluded). */
  opsMicros: Micros;
  /** Finalized operations. */
  tasks: number;
  /** Operations that failed or were retried. */
  failed: number;
}

export interface ScopeSpend {
  /** Most recent first, at most DAYS_KEPT, only days with activity. */
  days: readonly DaySpend[];
  /** Cumulative since the run began, storage of finished days included. */
  run: { components: ComponentMicros; totalMicros: Micros; tasks: number };
  /** Cost_storage_day of the scope, USD micros; 0 when the scope has no storage of its own. */
  storageDayMicros: Micros;
  /** Consecutive operations with Cost_total_op >= B_unit_cap (resets on one under the cap). */
  consecutiveAtCap: number;
  /**
   * UTC days on which that day's own spend raised a hard-stop condition: a set, ascending, within
   * HARD_DAYS_SPAN days of the newest. "Hard stops on 3 consecutive days" reads it.
   */
  hardDays: readonly number[];
}

export interface ScopeState {
  spend: ScopeSpend;
  guard: GuardStatus;
}

/** One finalized operation as the engine sees it. Components include this operation's storage share. */
export interface TaskOutcome {
  /** Epoch ms when the task finalized. */
  at: number;
  components: ComponentMicros;
  /** Cost_total_op, USD micros. */
  totalMicros: Micros;
  /** Failed or retried. */
  failed: boolean;
}

export interface Evaluation {
  state: ScopeState;
  /**
   * Every condition that holds now (waived ones included). For a late event, also its own day's day
   * conditions, read from that day's totals (their hits carry that `day`).
   */
  holds: ConditionHit[];
  /** Set when the guard state changed in this evaluation. */
  change?: { from: GuardState; to: GuardState };
  /** Day, week and run totals at the evaluation's time (computed when first read). */
  readonly totals: SpendTotals;
}

/**
 * An evaluation. Its totals (three component breakdowns) are computed only when read: the guard reads
 * them on a state change, the per-task path usually never. The spend is immutable, so reading them later
 * gives what reading them at once would have.
 */
class Evaluated implements Evaluation {
  readonly #now: number;
  #totals: SpendTotals | undefined;
  readonly change: { from: GuardState; to: GuardState } | undefined;

  constructor(
    readonly state: ScopeState,
    readonly holds: ConditionHit[],
    change: { from: GuardState; to: GuardState } | undefined,
    now: number,
  ) {
    this.#now = now;
    this.#totals = undefined;
    this.change = change;
  }

  get totals(): SpendTotals {
    return (this.#totals ??= totalsOf(this.state.spend, this.#now));
  }
}

export interface SpendTotals {
  dayMicros: Micros;
  weekMicros: Micros;
  runMicros: Micros;
  dayComponents: ComponentMicros;
  weekComponents: ComponentMicros;
  runComponents: ComponentMicros;
  tasksDay: number;
  failedDay: number;
}

export function emptySpend(storageDayMicros: Micros = 0): ScopeSpend {
  return { days: [], run: { components: zeroComponents(), totalMicros: 0, tasks: 0 }, storageDayMicros, consecutiveAtCap: 0, hardDays: [] };
}

export function emptyScope(now: number, storageDayMicros: Micros = 0): ScopeState {
  return { spend: emptySpend(storageDayMicros), guard: { state: 'NORMAL', since: now, seq: 0, acknowledged: false, waived: [], dayWaivers: [] } };
}

function opsOf(c: ComponentMicros): Micros {
  return operationSum(c);
}

/** Storage burnt on a day: all of Cost_storage_day for a finished day, pro rata for the current one. */
function storageOn(spend: ScopeSpend, day: number, now: number): Micros {
  return storageBurnt(spend.storageDayMicros, day, now);
}

/** Of a Cost_storage_day (USD micros), what is burnt on `day` as of `now`: all of it once the day has finished. */
export function storageBurnt(storageDayMicros: Micros, day: number, now: number): Micros {
  if (storageDayMicros === 0) return 0;
  const today = dayOf(now);
  if (day < today) return storageDayMicros;
  if (day > today) return 0;
  return Math.floor((storageDayMicros * (now - today * DAY_MS)) / DAY_MS);
}

/**
 * Adds one finalized operation to a scope's spend. Storage in the operation counts for unit economics
 * (the unit cap) but the day total takes storage as a daily burn instead, so it is not added to the day.
 */
export function applyTask(spend: ScopeSpend, t: TaskOutcome, unitCap: Micros): ScopeSpend {
  const day = dayOf(t.at);
  const days = spend.days.slice();
  let run = spend.run;
  let idx = indexOfDay(days, day);
  if (idx < 0 && !(days.length >= DAYS_KEPT && day < days[days.length - 1]!.day)) {
    // A new day bucket (a day older than every kept one only changes the run total).
    days.push({ day, components: zeroComponents(), opsMicros: 0, tasks: 0, failed: 0 });
    days.sort(byDayDesc);
    while (days.length > DAYS_KEPT) {
      // A day leaving the window has finished: its storage is now part of the run.
      run = addStorageToRun(run, spend.storageDayMicros, days.pop()!);
    }
    idx = indexOfDay(days, day);
  }
  const c = t.components;
  if (idx >= 0) {
    const d = days[idx]!;
    const dc = d.components;
    const components: ComponentMicros = addOperationComponents(dc, c);
    days[idx] = { day, components, opsMicros: d.opsMicros + opsOf(c), tasks: d.tasks + 1, failed: t.failed ? d.failed + 1 : d.failed };
  }
  const rc = run.components;
  return {
    days,
    run: {
      components: addOperationComponents(rc, c),
      totalMicros: run.totalMicros + opsOf(c),
      tasks: run.tasks + 1,
    },
    storageDayMicros: spend.storageDayMicros,
    consecutiveAtCap: t.totalMicros >= unitCap ? spend.consecutiveAtCap + 1 : 0,
    hardDays: spend.hardDays,
  };
}

function byDayDesc(a: DaySpend, b: DaySpend): number {
  return b.day - a.day;
}

function indexOfDay(days: readonly DaySpend[], day: number): number {
  for (let i = 0; i < days.length; i++) if (days[i]!.day === day) return i;
  return -1;
}

const addInto = addComponentsInto;

function addStorageToRun(run: ScopeSpend['run'], storageDay: Micros, _day: DaySpend): ScopeSpend['run'] {
  if (storageDay === 0) return run;
  return { ...run, components: { ...run.components, storage: run.components.storage + storageDay }, totalMicros: run.totalMicros + storageDay };
}

/** Day, rolling 7-day and run totals of a scope as of `now` (storage included as described). */
export function totalsOf(spend: ScopeSpend, now: number): SpendTotals {
  const today = dayOf(now);
  const dayComponents = zeroComponents();
  const weekComponents = zeroComponents();
  let tasksDay = 0;
  let failedDay = 0;
  let storageInRunWindow = 0;
  let sawToday = false;
  for (const d of spend.days) {
    const storage = storageOn(spend, d.day, now);
    if (d.day <= today) storageInRunWindow += storage;
    if (d.day === today) {
      sawToday = true;
      addInto(dayComponents, d.components);
      dayComponents.storage += storage;
      tasksDay = d.tasks;
      failedDay = d.failed;
    }
    if (d.day <= today && d.day > today - 7) {
      addInto(weekComponents, d.components);
      weekComponents.storage += storage;
    }
  }
  if (!sawToday) {
    const s = storageOn(spend, today, now);
    dayComponents.storage += s;
    weekComponents.storage += s;
    storageInRunWindow += s;
  }
  const runComponents = { ...spend.run.components, storage: spend.run.components.storage + storageInRunWindow };
  return {
    dayMicros: opsOf(dayComponents) + dayComponents.storage,
    weekMicros: opsOf(weekComponents) + weekComponents.storage,
    runMicros: spend.run.totalMicros + storageInRunWindow,
    dayComponents,
    weekComponents,
    runComponents,
    tasksDay,
    failedDay,
  };
}

function hit(
  id: ConditionId,
  level: ConditionLevel,
  metric: string,
  unit: ConditionHit['unit'],
  value: number,
  threshold: number,
  top: Component,
): ConditionHit {
  return { id, level, metric, unit, value, threshold, topComponent: top };
}

/**
 * The day conditions of one day other than today, read from that day's bucket (a finished day counts
 * all of its storage). Returns whether a hard-stop day condition holds. Pushes onto `holds`.
 */
function pushDayHits(b: Thresholds, spend: ScopeSpend, d: DaySpend, now: number, holds: ConditionHit[]): boolean {
  const storage = storageOn(spend, d.day, now);
  const micros = d.opsMicros + storage;
  if (micros < b.daySoft && micros < b.dayHard) return false;
  const top = topComponent({ ...d.components, storage });
  const DAY = 'forge.cost.total.day_usd';
  let hard = false;
  if (micros >= b.daySoft) holds.push(dayHit('day_soft', 'WARNING', DAY, 'usd_micros', micros, b.daySoft, top, d.day));
  if (micros >= b.dayHard) {
    holds.push(dayHit('day_hard', 'HARD_STOP', DAY, 'usd_micros', micros, b.dayHard, top, d.day));
    hard = true;
  }
  const rate = d.failed / Math.max(d.tasks, 1);
  if (rate > 0.2 && micros >= b.daySoft) {
    holds.push(dayHit('failure_burn', 'HARD_STOP', 'forge.tasks.failure_rate', 'ratio', rate, 0.2, top, d.day));
    hard = true;
  }
  if (micros >= b.dayEmergency) holds.push(dayHit('day_emergency', 'EMERGENCY_STOP', DAY, 'usd_micros', micros, b.dayEmergency, top, d.day));
  return hard;
}

function dayHit(
  id: DayConditionId,
  level: ConditionLevel,
  metric: string,
  unit: ConditionHit['unit'],
  value: number,
  threshold: number,
  top: Component,
  day: number,
): ConditionHit {
  return { id, level, metric, unit, value, threshold, topComponent: top, day };
}

/** The hard-day set with `day` added (ascending, no duplicates), not yet bounded; `days` itself when it has it. */
function withHardDay(days: readonly number[], day: number): readonly number[] {
  if (days.includes(day)) return days;
  const out: number[] = [];
  let placed = false;
  for (const d of days) {
    if (!placed && day <= d) {
      if (day !== d) out.push(day);
      placed = true;
    }
    out.push(d);
  }
  if (!placed) out.push(day);
  return out;
}

/** Whether `day` is one of 3 consecutive days in the (ascending) set. */
export function inThreeRun(days: readonly number[], day: number): boolean {
  if (!days.includes(day)) return false;
  const before = days.includes(day - 1);
  const after = days.includes(day + 1);
  return (before && after) || (before && days.includes(day - 2)) || (after && days.includes(day + 2));
}

/**
 * Every stop condition that holds for a scope at `now`, given the operation just finalized (if any).
 * Thresholds are inclusive except the failure rate (> 0.2). Day conditions read today's totals and, when
 * the operation was finalized on another UTC day (a late event), that day's totals too; week, run and
 * unit conditions read `now`.
 *
 * Also returns the spend with hard-stop days recorded, because "hard stops on 3 consecutive days" reads
 * that history. A day is recorded only when its own spend raises a hard stop: today when a day condition
 * on today's totals does (day_hard, failure_burn), and the operation's day when any hard-stop condition of
 * this evaluation does, except today's day conditions when the operation is late. State carried over
 * from an earlier day (a unit-cap streak, the week, the run) never records a day by itself.
 */
export function conditionsFor(b: Thresholds, spend: ScopeSpend, now: number, op?: TaskOutcome): { holds: ConditionHit[]; spend: ScopeSpend } {
  // This runs for every scope of every task, and most scopes raise nothing. So the day, week and run totals
  // are first summed as plain numbers (the same sums as totalsOf, no objects), and the component breakdowns
  // (for the top component of a hit) are built only when a condition holds.
  const today = dayOf(now);
  let dayMicros = 0;
  let weekMicros = 0;
  let storageInRunWindow = 0;
  let sawToday = false;
  for (const d of spend.days) {
    const storage = storageOn(spend, d.day, now);
    if (d.day > today) continue;
    storageInRunWindow += storage;
    if (d.day <= today - 7) continue;
    const c = d.components;
    const m = operationSum(c) + c.storage + storage;
    weekMicros += m;
    if (d.day === today) {
      sawToday = true;
      dayMicros += m;
    }
  }
  if (!sawToday) {
    const s = storageOn(spend, today, now);
    dayMicros += s;
    weekMicros += s;
    storageInRunWindow += s;
  }
  const runMicros = spend.run.totalMicros + storageInRunWindow;
  const opDay = op ? dayOf(op.at) : today;
  const quiet = bandsQuiet(b, dayMicros, weekMicros, runMicros, spend.consecutiveAtCap, op) && opDay === today && !inThreeRun(spend.hardDays, today);
  // No band holds (failure_burn needs the day at soft), no hard day is recorded, the spend stays; only a
  // projected breach may hold, and it is looked at only after its cheap preconditions.
  if (quiet) {
    const holds: ConditionHit[] = [];
    pushProjections(b, spend, now, today, dayMicros, weekMicros, holds, undefined);
    return { holds, spend };
  }
  return conditionsHolding(b, spend, now, totalsOf(spend, now), today, opDay, op);
}

/**
 * Whether no band holds at these totals (and the operation's own figures): the day, week and run under all
 * of their bands, the unit streak under K, the operation under the unit's near and emergency caps. Then
 * no condition holds but a projected breach (see projectionMayHold) or one of a late event's own day.
 */
export function bandsQuiet(b: Thresholds, dayMicros: Micros, weekMicros: Micros, runMicros: Micros, consecutiveAtCap: number, op: TaskOutcome | undefined): boolean {
  return (
    dayMicros < b.daySoft &&
    dayMicros < b.dayHard &&
    dayMicros < b.dayEmergency &&
    weekMicros < b.weekSoft &&
    weekMicros < b.weekHard &&
    runMicros < b.runCap &&
    consecutiveAtCap < b.k &&
    (op === undefined || (op.totalMicros < b.unitNearCap && op.totalMicros < b.unitEmergency))
  );
}

/** Preconditions of the projected breaches in doubles, with a margin far above their rounding (see pushProjections). */
const NEAR = 1 - 1e-9;

function dayProjectionNear(b: Thresholds, dayMicros: Micros, weekMicros: Micros, over: number, left: number): boolean {
  return dayMicros < b.daySoft && dayMicros + (weekMicros * left) / over >= b.dayHard * NEAR;
}

/** The week's peak is at most the week now plus the rate over 7 days less today's elapsed part. */
function weekProjectionNear(b: Thresholds, weekMicros: Micros, over: number, left: number): boolean {
  return weekMicros < b.weekSoft && weekMicros + (weekMicros * (left + RATE_WINDOW_MS)) / over >= b.weekHard * NEAR;
}

/**
 * Whether a projected breach may hold at these totals: false when pushProjections would raise nothing
 * (before PROJECTION_FROM_MS of the day, no spend in the week, or the cheap preconditions not met).
 */
export function projectionMayHold(b: Thresholds, now: number, dayMicros: Micros, weekMicros: Micros): boolean {
  const elapsed = now - dayOf(now) * DAY_MS;
  if (elapsed < PROJECTION_FROM_MS || weekMicros <= 0) return false;
  const over = RATE_WINDOW_MS + elapsed;
  const left = DAY_MS - elapsed;
  return dayProjectionNear(b, dayMicros, weekMicros, over, left) || weekProjectionNear(b, weekMicros, over, left);
}

/**
 * The projected breaches (WARNING), raised before a band is crossed, from the rolling week's burn rate: its
 * spend over the time it spans so far (the 6 full days before today and today's elapsed part). A trailing
 * week, not today's pace alone: a burst in the morning (the day's worked example spends $72 in 8 minutes
 * after 09:00) would otherwise project a breach that the day's own bands already watch; and nothing is
 * projected before PROJECTION_FROM_MS of the UTC day has passed.
 * - day_projected: day total + rate x the time left in the UTC day >= B_day_hard, while the day total is
 *   under B_day_soft.
 * - week_projected: while the rolling week is under B_week_soft, the highest it reaches at that rate over
 *   the next 7 days >= B_week_hard. The rolling week ends with each UTC day, when its oldest day leaves;
 *   at the end of today + j (j = 0..6) it holds the kept days still inside it, today so far, and the rate
 *   over the time until then. At a steady rate that is 7 days of it.
 * The hit's value is the projected total (USD micros), its threshold the hard band. No run variant: the
 * bands have no run deadline or expected duration (B_run_cap has no time to project over).
 * `t`: the totals when already built (for the top component); returns them when built here.
 */
function pushProjections(
  b: Thresholds,
  spend: ScopeSpend,
  now: number,
  today: number,
  dayMicros: Micros,
  weekMicros: Micros,
  holds: ConditionHit[],
  t: SpendTotals | undefined,
): SpendTotals | undefined {
  const elapsed = now - today * DAY_MS;
  if (elapsed < PROJECTION_FROM_MS || weekMicros <= 0) return t;
  const over = RATE_WINDOW_MS + elapsed;
  const left = DAY_MS - elapsed;
  // Preconditions in doubles with a margin far above their rounding; the exact integer figure follows only then.
  if (dayProjectionNear(b, dayMicros, weekMicros, over, left)) {
    const projected = projectedMicros(dayMicros, weekMicros, over, left);
    if (projected >= b.dayHard) {
      t ??= totalsOf(spend, now);
      holds.push(hit('day_projected', 'WARNING', 'forge.cost.total.day_usd', 'usd_micros', projected, b.dayHard, topComponent(t.dayComponents)));
    }
  }
  if (weekProjectionNear(b, weekMicros, over, left)) {
    let peak = 0;
    let dropped = 0;
    for (let j = 0; j < 7; j++) {
      // At the end of day today + j the days up to today - 7 + j have left the window.
      if (j > 0) dropped += dayTotalOn(spend, today - 7 + j, now);
      const w = projectedMicros(weekMicros - dropped, weekMicros, over, left + j * DAY_MS);
      if (w > peak) peak = w;
    }
    if (peak >= b.weekHard) {
      t ??= totalsOf(spend, now);
      holds.push(hit('week_projected', 'WARNING', 'forge.cost.total.week_usd', 'usd_micros', peak, b.weekHard, topComponent(t.weekComponents)));
    }
  }
  return t;
}

/** A kept day's total as the rolling week counts it (a day with no bucket counts 0 there). */
function dayTotalOn(spend: ScopeSpend, day: number, now: number): Micros {
  const idx = indexOfDay(spend.days, day);
  if (idx < 0) return 0;
  const c = spend.days[idx]!.components;
  return operationSum(c) + c.storage + storageOn(spend, day, now);
}

/**
 * conditionsFor without its shortcut for quiet scopes: every condition evaluated from the built totals.
 * The reference the shortcut must agree with (a property test compares the two); not on the hot path.
 */
export function conditionsForFull(b: Thresholds, spend: ScopeSpend, now: number, op?: TaskOutcome): { holds: ConditionHit[]; spend: ScopeSpend } {
  const today = dayOf(now);
  return conditionsHolding(b, spend, now, totalsOf(spend, now), today, op ? dayOf(op.at) : today, op);
}

/** conditionsFor once a condition may hold: every condition with its top component, hard days recorded. */
function conditionsHolding(b: Thresholds, spend: ScopeSpend, now: number, t: SpendTotals, today: number, opDay: number, op: TaskOutcome | undefined): { holds: ConditionHit[]; spend: ScopeSpend } {
  const holds: ConditionHit[] = [];
  // No closures here: this runs for every scope of every task that is near a band. The top component is found
  // where a condition holds (a few compares, compiled from the component list).
  const DAY = 'forge.cost.total.day_usd';
  const WEEK = 'forge.cost.total.week_usd';
  const OP = 'forge.cost.total.op_usd';
  /** A hard-stop condition on today's day totals. */
  let todayHard = false;
  /** A hard-stop condition that is not a day condition (week, run, unit streak). */
  let otherHard = false;

  // WARNING
  if (t.dayMicros >= b.daySoft) holds.push(dayHit('day_soft', 'WARNING', DAY, 'usd_micros', t.dayMicros, b.daySoft, topComponent(t.dayComponents), today));
  if (t.weekMicros >= b.weekSoft) holds.push(hit('week_soft', 'WARNING', WEEK, 'usd_micros', t.weekMicros, b.weekSoft, topComponent(t.weekComponents)));
  pushProjections(b, spend, now, today, t.dayMicros, t.weekMicros, holds, t);
  if (op && op.totalMicros >= b.unitNearCap) {
    holds.push(hit('unit_near_cap', 'WARNING', OP, 'usd_micros', op.totalMicros, b.unitNearCap, topComponent(op.components)));
  }
  // HARD STOP
  if (t.dayMicros >= b.dayHard) {
    holds.push(dayHit('day_hard', 'HARD_STOP', DAY, 'usd_micros', t.dayMicros, b.dayHard, topComponent(t.dayComponents), today));
    todayHard = true;
  }
  if (t.weekMicros >= b.weekHard) {
    holds.push(hit('week_hard', 'HARD_STOP', WEEK, 'usd_micros', t.weekMicros, b.weekHard, topComponent(t.weekComponents)));
    otherHard = true;
  }
  if (t.runMicros >= b.runCap) {
    holds.push(hit('run_cap', 'HARD_STOP', 'forge.cost.total.run_usd', 'usd_micros', t.runMicros, b.runCap, topComponent(t.runComponents)));
    otherHard = true;
  }
  if (spend.consecutiveAtCap >= b.k) {
    holds.push(hit('unit_cap_consecutive', 'HARD_STOP', OP, 'count', spend.consecutiveAtCap, b.k, op ? topComponent(op.components) : topComponent(t.dayComponents)));
    otherHard = true;
  }
  const rate = t.failedDay / Math.max(t.tasksDay, 1);
  if (rate > 0.2 && t.dayMicros >= b.daySoft) {
    holds.push(dayHit('failure_burn', 'HARD_STOP', 'forge.tasks.failure_rate', 'ratio', rate, 0.2, topComponent(t.dayComponents), today));
    todayHard = true;
  }
  // EMERGENCY STOP
  if (t.dayMicros >= b.dayEmergency) holds.push(dayHit('day_emergency', 'EMERGENCY_STOP', DAY, 'usd_micros', t.dayMicros, b.dayEmergency, topComponent(t.dayComponents), today));
  if (op && op.totalMicros >= b.unitEmergency) {
    holds.push(hit('unit_emergency', 'EMERGENCY_STOP', OP, 'usd_micros', op.totalMicros, b.unitEmergency, topComponent(op.components)));
  }

  // A late event: its day's conditions, from its day's bucket (none when the day is older than the kept ones).
  let opDayHard = todayHard;
  if (opDay !== today) {
    const idx = indexOfDay(spend.days, opDay);
    opDayHard = idx >= 0 && pushDayHits(b, spend, spend.days[idx]!, now, holds);
  }

  // The operation's own day is hard when a hard stop holds that does not read another day's totals.
  const opHard = op !== undefined && (otherHard || opDayHard);
  let hardDays = spend.hardDays;
  if (todayHard) hardDays = withHardDay(hardDays, today);
  if (opHard) hardDays = withHardDay(hardDays, opDay);
  // A run of 3 that holds the day just recorded; today's place in one stands all day once recorded.
  if ((opHard && inThreeRun(hardDays, opDay)) || inThreeRun(hardDays, today)) {
    holds.push(hit('hard_three_days', 'EMERGENCY_STOP', 'forge.stop_condition.hard_stop.count', 'count', 3, 3, topComponent(t.dayComponents)));
  }

  if (todayHard || opHard) {
    // Kept within HARD_DAYS_SPAN of the newest (withHardDay gives back the same set when the day was in it).
    const newest = hardDays[hardDays.length - 1]!;
    let from = 0;
    while (hardDays[from]! <= newest - HARD_DAYS_SPAN) from++;
    const bounded = from === 0 ? hardDays : hardDays.slice(from);
    if (bounded !== spend.hardDays && !sameDays(bounded, spend.hardDays)) return { holds, spend: { ...spend, hardDays: bounded } };
  }
  return { holds, spend };
}

function sameDays(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function isWaived(h: ConditionHit, waived: readonly ConditionId[], dayWaivers: readonly DayWaiver[]): boolean {
  if (h.day === undefined) return waived.includes(h.id);
  for (const w of dayWaivers) if (w.id === h.id && w.day === h.day) return true;
  return false;
}

function levelOf(holds: readonly ConditionHit[], waived: readonly ConditionId[], dayWaivers: readonly DayWaiver[]): GuardState {
  let s: GuardState = 'NORMAL';
  for (const h of holds) if (!isWaived(h, waived, dayWaivers)) s = maxState(s, h.level);
  return s;
}

/**
 * The waivers in force at `now`: non-day ones that still hold (or all of them, with `keepStanding`), day
 * ones within HARD_DAYS_SPAN days; `waived` lists the non-day ones and today's day ones.
 */
function waiversAt(
  guard: GuardStatus,
  holds: readonly ConditionHit[] | undefined,
  now: number,
): { waived: ConditionId[]; dayWaivers: DayWaiver[] } {
  const today = dayOf(now);
  // A day waiver ends with its UTC day, and sooner when today's condition stops holding (e.g. the band was
  // raised): crossing the new band stops the scope again. A past day's totals only grow, so its waivers
  // stay (a late event for a lifted day does not stop the scope again).
  const dayWaivers = (guard.dayWaivers ?? []).filter(
    (w) => w.day > today - HARD_DAYS_SPAN && !(holds && w.day === today && !holds.some((h) => h.id === w.id && h.day === w.day)),
  );
  const waived: ConditionId[] = [];
  for (const id of guard.waived) {
    if (isDayCondition(id)) continue;
    if (holds && !holds.some((h) => h.id === id)) continue;
    waived.push(id);
  }
  for (const w of dayWaivers) if (w.day === today && !waived.includes(w.id)) waived.push(w.id);
  return { waived, dayWaivers };
}

/**
 * The ids of the waivers in force at `now`: the non-day ones, and the day ones given for today. For
 * callers that read waivers between evaluations (an admission cap just after midnight).
 */
export function waivedAt(guard: GuardStatus, now: number): ConditionId[] {
  return waiversAt(guard, undefined, now).waived;
}

function sameWaivers(g: GuardStatus, w: { waived: readonly ConditionId[]; dayWaivers: readonly DayWaiver[] }): boolean {
  const dw = g.dayWaivers ?? [];
  if (g.waived.length !== w.waived.length || dw.length !== w.dayWaivers.length) return false;
  for (let i = 0; i < w.waived.length; i++) if (g.waived[i] !== w.waived[i]) return false;
  for (let i = 0; i < dw.length; i++) if (dw[i] !== w.dayWaivers[i]) return false;
  return true;
}

/** Latches the guard: escalate by itself; a WARNING clears only once acknowledged and no longer holding. */
function latch(guard: GuardStatus, holds: readonly ConditionHit[], now: number): { guard: GuardStatus; change?: Evaluation['change'] } {
  const w = guard.waived.length === 0 && (guard.dayWaivers ?? []).length === 0 ? undefined : waiversAt(guard, holds, now);
  const waived = w ? w.waived : guard.waived;
  const dayWaivers = w ? w.dayWaivers : (guard.dayWaivers ?? []);
  const derived = levelOf(holds, waived, dayWaivers);
  let next: GuardState = maxState(guard.state, derived);
  if (guard.state === 'WARNING' && guard.acknowledged && derived === 'NORMAL') next = 'NORMAL';
  if (next === guard.state) {
    return { guard: !w || sameWaivers(guard, w) ? guard : { ...guard, waived, dayWaivers } };
  }
  return {
    guard: { state: next, since: now, seq: guard.seq + 1, acknowledged: false, waived, dayWaivers },
    change: { from: guard.state, to: next },
  };
}

/** Evaluates every condition for one finalized task in one scope (a late one included: see conditionsFor). */
export function evaluateTask(b: Thresholds, s: ScopeState, task: TaskOutcome, now: number): Evaluation {
  return evaluateApplied(b, { spend: applyTask(s.spend, task, b.unitCap), guard: s.guard }, task, now);
}

/**
 * evaluateTask once the task is in the spend already (`s.spend` is applyTask's result): for a caller that
 * keeps the spend in its own layout and adds the task there (rules/scope-table.ts).
 */
export function evaluateApplied(b: Thresholds, s: ScopeState, task: TaskOutcome, now: number): Evaluation {
  const { holds, spend } = conditionsFor(b, s.spend, now, task);
  // Most tasks: nothing holds on a NORMAL scope with no waiver to expire, so the guard stays as it is.
  const g = s.guard;
  if (holds.length === 0 && g.state === 'NORMAL' && g.waived.length === 0 && (g.dayWaivers === undefined || g.dayWaivers.length === 0)) {
    return new Evaluated({ spend, guard: g }, holds, undefined, now);
  }
  const { guard, change } = latch(g, holds, now);
  return new Evaluated({ spend, guard }, holds, change, now);
}

/**
 * The hourly rollup: day buckets and run totals recomputed from the event log (the source of truth)
 * replace the live ones; the unit-cap streak and the hard-day history carry over. Then re-evaluate.
 *
 * `fromLog.days`: every day with activity the log has for the scope, in any order and any number, with
 * storage excluded from the components. `fromLog.run`: operations only (storage 0). The days beyond the
 * kept window add their full Cost_storage_day to the run, exactly as applyTask does when a day leaves
 * the window, so that the recompute and the per-task path agree to the micro-dollar.
 */
export function evaluateRollup(
  b: Thresholds,
  s: ScopeState,
  fromLog: { days: readonly DaySpend[]; run: ScopeSpend['run']; storageDayMicros?: Micros },
  now: number,
): Evaluation {
  const storageDayMicros = fromLog.storageDayMicros ?? s.spend.storageDayMicros;
  const sorted = [...fromLog.days].sort(byDayDesc);
  let run = fromLog.run;
  for (let i = DAYS_KEPT; i < sorted.length; i++) run = addStorageToRun(run, storageDayMicros, sorted[i]!);
  const spend: ScopeSpend = { ...s.spend, days: sorted.slice(0, DAYS_KEPT), run, storageDayMicros };
  const r = conditionsFor(b, spend, now);
  const { guard, change } = latch(s.guard, r.holds, now);
  return new Evaluated({ spend: r.spend, guard }, r.holds, change, now);
}

/** Re-evaluates at `now` with no new task (the clock moved: a new day, the week window slid). */
export function evaluateAt(b: Thresholds, s: ScopeState, now: number): Evaluation {
  const r = conditionsFor(b, s.spend, now);
  const { guard, change } = latch(s.guard, r.holds, now);
  return new Evaluated({ spend: r.spend, guard }, r.holds, change, now);
}

export type OperatorOutcome =
  | { ok: true; state: ScopeState; change?: { from: GuardState; to: GuardState } }
  | { ok: false; reason: 'not_warning' | 'not_stopped' };

/** An operator acknowledges a WARNING: re-notification stops; it clears once no warning holds. */
export function acknowledgeWarning(b: Thresholds, s: ScopeState, now: number): OperatorOutcome {
  if (s.guard.state !== 'WARNING') return { ok: false, reason: 'not_warning' };
  const { holds } = conditionsFor(b, s.spend, now);
  const { waived, dayWaivers } = waiversAt(s.guard, undefined, now);
  const stillWarning = levelOf(holds, waived, dayWaivers) !== 'NORMAL';
  if (stillWarning) return { ok: true, state: { ...s, guard: { ...s.guard, acknowledged: true } } };
  const guard: GuardStatus = { state: 'NORMAL', since: now, seq: s.guard.seq + 1, acknowledged: false, waived, dayWaivers };
  return { ok: true, state: { ...s, guard }, change: { from: 'WARNING', to: 'NORMAL' } };
}

/**
 * An operator lifts a HARD_STOP or EMERGENCY_STOP. The stop conditions holding now are waived: a day
 * condition for its UTC day only (today's, and an earlier kept day's whose totals raise it, so that late
 * events for that day do not stop the scope again); any other one while it keeps holding. Any condition
 * not waived, e.g. the emergency level above a lifted hard stop or the next day's breach, still escalates.
 */
export function liftStop(b: Thresholds, s: ScopeState, now: number): OperatorOutcome {
  if (stateRank(s.guard.state) < stateRank('HARD_STOP')) return { ok: false, reason: 'not_stopped' };
  const today = dayOf(now);
  const { holds, spend } = conditionsFor(b, s.spend, now);
  const past: ConditionHit[] = [];
  for (const d of spend.days) if (d.day < today && d.day > today - HARD_DAYS_SPAN) pushDayHits(b, spend, d, now, past);
  const kept = waiversAt(s.guard, undefined, now);
  const waived = kept.waived;
  const dayWaivers = kept.dayWaivers;
  for (const h of [...holds, ...past]) {
    if (h.level === 'WARNING') continue;
    if (h.day === undefined) {
      if (!waived.includes(h.id)) waived.push(h.id);
    } else if (isDayCondition(h.id) && !dayWaivers.some((w) => w.id === h.id && w.day === h.day)) {
      dayWaivers.push({ id: h.id, day: h.day });
      if (h.day === today && !waived.includes(h.id)) waived.push(h.id);
    }
  }
  const to = levelOf(holds, waived, dayWaivers);
  const guard: GuardStatus = { state: to, since: now, seq: s.guard.seq + 1, acknowledged: true, waived, dayWaivers };
  return { ok: true, state: { spend, guard }, change: { from: s.guard.state, to } };
}
