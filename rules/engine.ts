import type { Thresholds } from './bands.ts';
import { topComponent, zeroComponents, type Component, type ComponentMicros } from './cost-model.ts';
import type { Micros } from './money.ts';
import { maxState, stateRank, type ConditionHit, type ConditionId, type ConditionLevel, type GuardState } from './states.ts';

/**
 * The stop-condition engine: pure functions of (bands, spend state, event, now). No clock, no I/O.
 * State is derived from totals; the guard only latches (escalates by itself, comes down by an operator).
 */

export const DAY_MS = 86_400_000;
/** Day buckets kept per scope: today and the 6 days before make the rolling week; one more for rollover. */
const DAYS_KEPT = 8;

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
  /** UTC days on which a hard-stop condition held, most recent first, at most 3. */
  hardDays: readonly number[];
}

export interface GuardStatus {
  state: GuardState;
  /** Epoch ms of the last state change. */
  since: number;
  /** Per-scope sequence of state changes. */
  seq: number;
  /** A WARNING stays until acknowledged; then it clears once no warning holds. */
  acknowledged: boolean;
  /** Conditions an operator lifted: they do not escalate again while they keep holding. */
  waived: readonly ConditionId[];
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
  /** Every condition that holds now (waived ones included). */
  holds: ConditionHit[];
  /** Set when the guard state changed in this evaluation. */
  change?: { from: GuardState; to: GuardState };
  totals: SpendTotals;
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
  return { spend: emptySpend(storageDayMicros), guard: { state: 'NORMAL', since: now, seq: 0, acknowledged: false, waived: [] } };
}

function opsOf(c: ComponentMicros): Micros {
  return c.rli + c.gas + c.compute + c.llm;
}

/** Storage burnt on a day: all of Cost_storage_day for a finished day, pro rata for the current one. */
function storageOn(spend: ScopeSpend, day: number, now: number): Micros {
  if (spend.storageDayMicros === 0) return 0;
  const today = dayOf(now);
  if (day < today) return spend.storageDayMicros;
  if (day > today) return 0;
  return Math.floor((spend.storageDayMicros * (now - today * DAY_MS)) / DAY_MS);
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
    const components: ComponentMicros = { rli: dc.rli + c.rli, gas: dc.gas + c.gas, compute: dc.compute + c.compute, storage: dc.storage, llm: dc.llm + c.llm };
    days[idx] = { day, components, opsMicros: d.opsMicros + opsOf(c), tasks: d.tasks + 1, failed: t.failed ? d.failed + 1 : d.failed };
  }
  const rc = run.components;
  return {
    days,
    run: {
      components: { rli: rc.rli + c.rli, gas: rc.gas + c.gas, compute: rc.compute + c.compute, storage: rc.storage, llm: rc.llm + c.llm },
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

function addInto(into: ComponentMicros, c: ComponentMicros): void {
  into.rli += c.rli;
  into.gas += c.gas;
  into.compute += c.compute;
  into.storage += c.storage;
  into.llm += c.llm;
}

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
 * Every stop condition that holds for a scope at `now`, given the operation just finalized (if any).
 * Thresholds are inclusive except the failure rate (> 0.2). Also returns the spend with today's
 * hard-stop day recorded, because "hard stops on 3 consecutive days" reads that history.
 */
export function conditionsFor(
  b: Thresholds,
  spend: ScopeSpend,
  now: number,
  op?: TaskOutcome,
): { holds: ConditionHit[]; spend: ScopeSpend; totals: SpendTotals } {
  const t = totalsOf(spend, now);
  const holds: ConditionHit[] = [];
  // No closures here: this runs for every scope of every task.
  const dayTop = topComponent(t.dayComponents);
  const weekTop = topComponent(t.weekComponents);
  const DAY = 'forge.cost.total.day_usd';
  const WEEK = 'forge.cost.total.week_usd';
  const OP = 'forge.cost.total.op_usd';

  // WARNING
  if (t.dayMicros >= b.daySoft) holds.push(hit('day_soft', 'WARNING', DAY, 'usd_micros', t.dayMicros, b.daySoft, dayTop));
  if (t.weekMicros >= b.weekSoft) holds.push(hit('week_soft', 'WARNING', WEEK, 'usd_micros', t.weekMicros, b.weekSoft, weekTop));
  if (op && op.totalMicros >= b.unitNearCap) {
    holds.push(hit('unit_near_cap', 'WARNING', OP, 'usd_micros', op.totalMicros, b.unitNearCap, topComponent(op.components)));
  }
  // HARD STOP
  if (t.dayMicros >= b.dayHard) holds.push(hit('day_hard', 'HARD_STOP', DAY, 'usd_micros', t.dayMicros, b.dayHard, dayTop));
  if (t.weekMicros >= b.weekHard) holds.push(hit('week_hard', 'HARD_STOP', WEEK, 'usd_micros', t.weekMicros, b.weekHard, weekTop));
  if (t.runMicros >= b.runCap) {
    holds.push(hit('run_cap', 'HARD_STOP', 'forge.cost.total.run_usd', 'usd_micros', t.runMicros, b.runCap, topComponent(t.runComponents)));
  }
  if (spend.consecutiveAtCap >= b.k) {
    holds.push(hit('unit_cap_consecutive', 'HARD_STOP', OP, 'count', spend.consecutiveAtCap, b.k, op ? topComponent(op.components) : dayTop));
  }
  const rate = t.failedDay / Math.max(t.tasksDay, 1);
  if (rate > 0.2 && t.dayMicros >= b.daySoft) {
    holds.push(hit('failure_burn', 'HARD_STOP', 'forge.tasks.failure_rate', 'ratio', rate, 0.2, dayTop));
  }
  // EMERGENCY STOP
  if (t.dayMicros >= b.dayEmergency) holds.push(hit('day_emergency', 'EMERGENCY_STOP', DAY, 'usd_micros', t.dayMicros, b.dayEmergency, dayTop));
  if (op && op.totalMicros >= b.unitEmergency) {
    holds.push(hit('unit_emergency', 'EMERGENCY_STOP', OP, 'usd_micros', op.totalMicros, b.unitEmergency, topComponent(op.components)));
  }
  let nextSpend = spend;
  const today = dayOf(now);
  let hard = false;
  for (const h of holds) if (h.level === 'HARD_STOP') hard = true;
  if (hard && spend.hardDays[0] !== today) {
    nextSpend = { ...spend, hardDays: [today, ...spend.hardDays].slice(0, 3) };
  }
  const hd = nextSpend.hardDays;
  if (hd.length === 3 && hd[0] === today && hd[1] === today - 1 && hd[2] === today - 2) {
    holds.push(hit('hard_three_days', 'EMERGENCY_STOP', 'forge.stop_condition.hard_stop.count', 'count', 3, 3, dayTop));
  }
  return { holds, spend: nextSpend, totals: t };
}

function levelOf(holds: readonly ConditionHit[], waived: readonly ConditionId[]): GuardState {
  let s: GuardState = 'NORMAL';
  for (const h of holds) if (!waived.includes(h.id)) s = maxState(s, h.level);
  return s;
}

/** Latches the guard: escalate by itself; a WARNING clears only once acknowledged and no longer holding. */
function latch(guard: GuardStatus, holds: readonly ConditionHit[], now: number): { guard: GuardStatus; change?: Evaluation['change'] } {
  const waived = guard.waived.length === 0 ? guard.waived : guard.waived.filter((id) => holds.some((h) => h.id === id));
  const derived = levelOf(holds, waived);
  let next: GuardState = maxState(guard.state, derived);
  if (guard.state === 'WARNING' && guard.acknowledged && derived === 'NORMAL') next = 'NORMAL';
  if (next === guard.state) {
    return { guard: waived.length === guard.waived.length ? guard : { ...guard, waived } };
  }
  return {
    guard: { state: next, since: now, seq: guard.seq + 1, acknowledged: false, waived },
    change: { from: guard.state, to: next },
  };
}

/** Evaluates every condition for one finalized task in one scope. */
export function evaluateTask(b: Thresholds, s: ScopeState, task: TaskOutcome, now: number): Evaluation {
  const applied = applyTask(s.spend, task, b.unitCap);
  const { holds, spend, totals } = conditionsFor(b, applied, now, task);
  const { guard, change } = latch(s.guard, holds, now);
  return change ? { state: { spend, guard }, holds, change, totals } : { state: { spend, guard }, holds, totals };
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
  const state = { spend: r.spend, guard };
  return change ? { state, holds: r.holds, change, totals: r.totals } : { state, holds: r.holds, totals: r.totals };
}

/** Re-evaluates at `now` with no new task (the clock moved: a new day, the week window slid). */
export function evaluateAt(b: Thresholds, s: ScopeState, now: number): Evaluation {
  const r = conditionsFor(b, s.spend, now);
  const { guard, change } = latch(s.guard, r.holds, now);
  const state = { spend: r.spend, guard };
  return change ? { state, holds: r.holds, change, totals: r.totals } : { state, holds: r.holds, totals: r.totals };
}

export type OperatorOutcome =
  | { ok: true; state: ScopeState; change?: { from: GuardState; to: GuardState } }
  | { ok: false; reason: 'not_warning' | 'not_stopped' };

/** An operator acknowledges a WARNING: re-notification stops; it clears once no warning holds. */
export function acknowledgeWarning(b: Thresholds, s: ScopeState, now: number): OperatorOutcome {
  if (s.guard.state !== 'WARNING') return { ok: false, reason: 'not_warning' };
  const { holds } = conditionsFor(b, s.spend, now);
  const stillWarning = levelOf(holds, s.guard.waived) !== 'NORMAL';
  if (stillWarning) return { ok: true, state: { ...s, guard: { ...s.guard, acknowledged: true } } };
  const guard: GuardStatus = { state: 'NORMAL', since: now, seq: s.guard.seq + 1, acknowledged: false, waived: s.guard.waived };
  return { ok: true, state: { ...s, guard }, change: { from: 'WARNING', to: 'NORMAL' } };
}

/**
 * An operator lifts a HARD_STOP or EMERGENCY_STOP. The stop conditions holding now are waived (they do
 * not stop the scope again while they keep holding); any other condition, e.g. the emergency level
 * above a lifted hard stop, still escalates.
 */
export function liftStop(b: Thresholds, s: ScopeState, now: number): OperatorOutcome {
  if (stateRank(s.guard.state) < stateRank('HARD_STOP')) return { ok: false, reason: 'not_stopped' };
  const { holds, spend } = conditionsFor(b, s.spend, now);
  const waived = [...new Set([...s.guard.waived, ...holds.filter((h) => h.level !== 'WARNING').map((h) => h.id)])];
  const to = levelOf(holds, waived);
  const guard: GuardStatus = { state: to, since: now, seq: s.guard.seq + 1, acknowledged: true, waived };
  return { ok: true, state: { spend, guard }, change: { from: s.guard.state, to } };
}
