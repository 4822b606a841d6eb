import type { Thresholds } from './bands.ts';
import { addOperationComponentsAt, COMPONENTS, componentsAt, operationSum, operationSumAt, setComponentsAt, STORAGE_SLOT } from './cost-model.ts';
import { bandsQuiet, conditionsFor, DAYS_KEPT, dayOf, emptyScope, evaluateApplied, HARD_DAYS_SPAN, inThreeRun, projectionMayHold, storageBurnt, type DaySpend, type Evaluation, type ScopeSpend, type ScopeState, type TaskOutcome } from './engine.ts';
import type { Micros } from './money.ts';
import { stateRank, type ConditionHit, type GuardStatus, type ScopeKey } from './states.ts';

/*
 * Every scope's rule state in one place, laid out for the per-task path. With 100,000 scopes a task's
 * evaluation is bound by memory, not arithmetic: an immutable ScopeState is a dozen objects spread over the
 * heap (state, spend, days, each day, its components, run, its components, guard), every task reads them
 * cold and builds their successor, which the collector then promotes and marks. Here each scope is a number,
 * and its spend is one stretch of a Float64Array (a few adjacent cache lines, never scanned by the
 * collector), updated in place. A task on which nothing holds (most of them) reads and writes that stretch
 * only and allocates nothing. Anything else (a condition that may hold, a guard that is not plain NORMAL, a
 * late event) takes the engine's own path on a ScopeState built from the stretch, and its outcome is written
 * back: the engine stays the one definition of the rules, and the table agrees with it to the micro-dollar
 * (test/rules-scope-table.test.ts compares the two on random streams).
 *
 * Layout of a scope's stretch (all numbers are exact integers: micros, counts, day numbers):
 *   header: the number of day buckets, Cost_storage_day, the unit-cap streak, the run's total and tasks,
 *           the guard's latch (see latchOf), whether the last holds were not empty, how many hard days
 *           there are;
 *   the run's components;
 *   DAYS_KEPT day buckets, most recent first, as ScopeSpend.days: day, ops total, tasks, failed, components.
 * The guard status, the hard days and the last holds stay objects, in arrays by scope number: they change
 * rarely and are read by the per-task path only when the header says there is something to read.
 *
 * A scope already stopped (the global scope once a day's band is crossed) has conditions holding on every
 * task, but mostly they can neither raise its guard nor record a hard day: then the task changes the spend
 * alone, and the conditions (the last holds, which only an announcement reads) are built when first read,
 * from the same spend (anything that replaces the spend builds them first).
 */

const NC = COMPONENTS.length;
const H_DAYS = 0;
const H_STORAGE_DAY = 1;
const H_STREAK = 2;
const H_RUN_TOTAL = 3;
const H_RUN_TASKS = 4;
const H_LATCH = 5;
const H_HOLDS = 6;
const H_HARD_DAYS = 7;
const RUN_C = 8;
const DAY0 = RUN_C + NC;
const D_DAY = 0;
const D_OPS = 1;
const D_TASKS = 2;
const D_FAILED = 3;
const D_C = 4;
const DAY_STRIDE = D_C + NC;
const STRIDE = DAY0 + DAYS_KEPT * DAY_STRIDE;

const NO_HOLDS: ConditionHit[] = [];
const NO_DAYS: readonly number[] = [];

/**
 * What the per-task path may assume of a guard: 0 nothing (a waiver to expire, or an acknowledged WARNING
 * that clears once nothing holds); else the state's rank + 1, no waiver (1: NORMAL, 4: EMERGENCY_STOP).
 */
function latchOf(g: GuardStatus): number {
  if (g.waived.length > 0 || (g.dayWaivers !== undefined && g.dayWaivers.length > 0)) return 0;
  if (g.state === 'WARNING' && g.acknowledged) return 0;
  return stateRank(g.state) + 1;
}

/** An evaluation whose conditions are built when read: its bands, time and task. */
interface PendingHolds {
  b: Thresholds;
  now: number;
  task: TaskOutcome;
}

/** An evaluation that may have changed more than the spend: the engine's, and the hard days before it. */
export interface TableEvaluation {
  evaluation: Evaluation;
  hardDaysBefore: readonly number[];
}

export class ScopeTable {
  #f: Float64Array;
  #capacity: number;
  readonly #index = new Map<ScopeKey, number>();
  readonly #keys: ScopeKey[] = [];
  readonly #guards: GuardStatus[] = [];
  readonly #hardDays: (readonly number[])[] = [];
  readonly #holds: ConditionHit[][] = [];
  readonly #pending: (PendingHolds | undefined)[] = [];

  constructor(capacity = 1024) {
    this.#capacity = Math.max(1, capacity);
    this.#f = new Float64Array(this.#capacity * STRIDE);
  }

  get size(): number {
    return this.#keys.length;
  }

  keys(): ScopeKey[] {
    return [...this.#keys];
  }

  has(key: ScopeKey): boolean {
    return this.#index.has(key);
  }

  /** The scope's number, or -1. */
  indexOf(key: ScopeKey): number {
    return this.#index.get(key) ?? -1;
  }

  /** The scope's number; an absent scope is added empty (as emptyScope(now, storageDayMicros)). */
  ensure(key: ScopeKey, now: number, storageDayMicros: Micros = 0): number {
    const i = this.#index.get(key);
    return i === undefined ? this.#add(key, emptyScope(now, storageDayMicros)) : i;
  }

  /** The scope's state as the engine takes it (built from the table: a copy). */
  get(key: ScopeKey): ScopeState | undefined {
    const i = this.#index.get(key);
    return i === undefined ? undefined : this.stateAt(i);
  }

  stateAt(i: number): ScopeState {
    return { spend: this.#spendAt(i), guard: this.#guards[i]! };
  }

  /** The guard status alone (no copy of the spend). */
  guard(key: ScopeKey): GuardStatus | undefined {
    const i = this.#index.get(key);
    return i === undefined ? undefined : this.#guards[i];
  }

  hardDays(key: ScopeKey): readonly number[] {
    const i = this.#index.get(key);
    return i === undefined ? NO_DAYS : this.#hardDays[i]!;
  }

  /** The conditions the scope's last evaluation found holding (empty before any). */
  holds(key: ScopeKey): ConditionHit[] {
    const i = this.#index.get(key);
    if (i === undefined) return NO_HOLDS;
    this.#settle(i);
    return this.#holds[i]!;
  }

  /** Builds the conditions of an evaluation that left them to be read (the spend is still the one it made). */
  #settle(i: number): void {
    const p = this.#pending[i];
    if (p === undefined) return;
    this.#pending[i] = undefined;
    this.#holds[i] = conditionsFor(p.b, this.#spendAt(i), p.now, p.task).holds;
  }

  /** Replaces a scope's state (added when absent); `holds`: of the evaluation that made it, when there was one. */
  set(key: ScopeKey, s: ScopeState, holds?: ConditionHit[]): void {
    const i = this.#index.get(key);
    if (i === undefined) this.#add(key, s);
    else this.#write(i, s);
    if (holds !== undefined) this.#setHolds(this.#index.get(key)!, holds);
  }

  /** Replaces a scope's guard status alone. */
  setGuard(i: number, g: GuardStatus): void {
    this.#guards[i] = g;
    this.#f[i * STRIDE + H_LATCH] = latchOf(g);
  }

  /**
   * evaluateTask for scope `i`, the task added in place. Undefined when nothing changed but the spend and
   * the last holds (the guard stays, no hard day is recorded): when nothing holds, or a stopped scope's
   * conditions cannot raise it (read them with `holds`). Otherwise the engine's evaluation, written back.
   */
  evaluateTask(i: number, b: Thresholds, task: TaskOutcome, now: number): TableEvaluation | undefined {
    const f = this.#f;
    const o = i * STRIDE;
    this.#apply(f, o, task, b.unitCap);
    // conditionsFor's sums, as plain numbers (the same additions in the same order).
    const today = dayOf(now);
    const storageDay = f[o + H_STORAGE_DAY]!;
    const n = f[o + H_DAYS]!;
    let dayMicros = 0;
    let weekMicros = 0;
    let storageInRunWindow = 0;
    let sawToday = false;
    let tasksDay = 0;
    let failedDay = 0;
    for (let j = 0; j < n; j++) {
      const d = o + DAY0 + j * DAY_STRIDE;
      const day = f[d + D_DAY]!;
      const storage = storageBurnt(storageDay, day, now);
      if (day > today) continue;
      storageInRunWindow += storage;
      if (day <= today - 7) continue;
      const m = operationSumAt(f, d + D_C) + f[d + D_C + STORAGE_SLOT]! + storage;
      weekMicros += m;
      if (day === today) {
        sawToday = true;
        dayMicros += m;
        tasksDay = f[d + D_TASKS]!;
        failedDay = f[d + D_FAILED]!;
      }
    }
    if (!sawToday) {
      const s = storageBurnt(storageDay, today, now);
      dayMicros += s;
      weekMicros += s;
      storageInRunWindow += s;
    }
    const runMicros = f[o + H_RUN_TOTAL]! + storageInRunWindow;
    const latch = f[o + H_LATCH]!;
    const streak = f[o + H_STREAK]!;
    if (latch !== 0 && dayOf(task.at) === today) {
      if (
        latch === 1 &&
        bandsQuiet(b, dayMicros, weekMicros, runMicros, streak, task) &&
        (f[o + H_HARD_DAYS] === 0 || !inThreeRun(this.#hardDays[i]!, today)) &&
        !projectionMayHold(b, now, dayMicros, weekMicros)
      ) {
        if (f[o + H_HOLDS] !== 0) this.#setHolds(i, NO_HOLDS);
        return undefined;
      }
      if (latch >= 2 && this.#latched(i, b, task, today, latch, dayMicros, weekMicros, runMicros, streak, tasksDay, failedDay)) {
        // The conditions hold as the engine would find them from this spend: built when read.
        this.#holds[i] = NO_HOLDS;
        this.#pending[i] = { b, now, task };
        f[o + H_HOLDS] = 1;
        return undefined;
      }
    }
    const hardDaysBefore = this.#hardDays[i]!;
    const evaluation = evaluateApplied(b, { spend: this.#spendAt(i), guard: this.#guards[i]! }, task, now);
    // The conditions change the hard days only, the latch the guard only.
    const after = evaluation.state.spend.hardDays;
    if (after !== hardDaysBefore) {
      this.#hardDays[i] = after;
      f[o + H_HARD_DAYS] = after.length;
    }
    if (evaluation.state.guard !== this.#guards[i]) this.setGuard(i, evaluation.state.guard);
    this.#setHolds(i, evaluation.holds);
    return { evaluation, hardDaysBefore };
  }

  /**
   * Whether a task on a stopped (or unacknowledged WARNING) scope with no waiver leaves its guard and hard
   * days as they are: no condition of a higher level than its state holds (conditionsHolding's levels, from
   * the same figures), and any hard-stop condition that holds is on a day the scope has recorded already
   * (today, in a set already within HARD_DAYS_SPAN). The task is not late (its day is today).
   */
  #latched(i: number, b: Thresholds, task: TaskOutcome, today: number, latch: number, dayMicros: Micros, weekMicros: Micros, runMicros: Micros, streak: number, tasksDay: number, failedDay: number): boolean {
    const hardDays = this.#hardDays[i]!;
    const todayHard = dayMicros >= b.dayHard || (failedDay / Math.max(tasksDay, 1) > 0.2 && dayMicros >= b.daySoft);
    const otherHard = weekMicros >= b.weekHard || runMicros >= b.runCap || streak >= b.k;
    if (todayHard || otherHard) {
      const n = hardDays.length;
      if (n === 0 || !hardDays.includes(today) || hardDays[0]! <= hardDays[n - 1]! - HARD_DAYS_SPAN) return false;
      if (latch < 3) return false;
    }
    if (latch >= 4) return true;
    // Below EMERGENCY_STOP: no emergency condition may hold.
    return dayMicros < b.dayEmergency && task.totalMicros < b.unitEmergency && !inThreeRun(hardDays, today);
  }

  #setHolds(i: number, holds: ConditionHit[]): void {
    this.#pending[i] = undefined;
    this.#holds[i] = holds;
    this.#f[i * STRIDE + H_HOLDS] = holds.length > 0 ? 1 : 0;
  }

  #add(key: ScopeKey, s: ScopeState): number {
    const i = this.#keys.length;
    if (i >= this.#capacity) {
      this.#capacity *= 2;
      const f = new Float64Array(this.#capacity * STRIDE);
      f.set(this.#f);
      this.#f = f;
    }
    this.#keys.push(key);
    this.#index.set(key, i);
    this.#guards.push(s.guard);
    this.#hardDays.push(NO_DAYS);
    this.#holds.push(NO_HOLDS);
    this.#pending.push(undefined);
    this.#write(i, s);
    return i;
  }

  #write(i: number, s: ScopeState): void {
    this.#settle(i);
    const f = this.#f;
    const o = i * STRIDE;
    const sp = s.spend;
    if (sp.days.length > DAYS_KEPT) throw new RangeError(`a scope keeps at most ${DAYS_KEPT} day buckets, got ${sp.days.length}`);
    f.fill(0, o, o + STRIDE);
    f[o + H_DAYS] = sp.days.length;
    f[o + H_STORAGE_DAY] = sp.storageDayMicros;
    f[o + H_STREAK] = sp.consecutiveAtCap;
    f[o + H_RUN_TOTAL] = sp.run.totalMicros;
    f[o + H_RUN_TASKS] = sp.run.tasks;
    setComponentsAt(f, o + RUN_C, sp.run.components);
    for (let j = 0; j < sp.days.length; j++) {
      const d = sp.days[j]!;
      const at = o + DAY0 + j * DAY_STRIDE;
      f[at + D_DAY] = d.day;
      f[at + D_OPS] = d.opsMicros;
      f[at + D_TASKS] = d.tasks;
      f[at + D_FAILED] = d.failed;
      setComponentsAt(f, at + D_C, d.components);
    }
    this.#hardDays[i] = sp.hardDays;
    f[o + H_HARD_DAYS] = sp.hardDays.length;
    this.setGuard(i, s.guard);
    // The holds are the last evaluation's, kept as they are.
    f[o + H_HOLDS] = this.#holds[i]!.length > 0 ? 1 : 0;
  }

  #spendAt(i: number): ScopeSpend {
    const f = this.#f;
    const o = i * STRIDE;
    const n = f[o + H_DAYS]!;
    const days: DaySpend[] = [];
    for (let j = 0; j < n; j++) {
      const at = o + DAY0 + j * DAY_STRIDE;
      days.push({ day: f[at + D_DAY]!, components: componentsAt(f, at + D_C), opsMicros: f[at + D_OPS]!, tasks: f[at + D_TASKS]!, failed: f[at + D_FAILED]! });
    }
    return {
      days,
      run: { components: componentsAt(f, o + RUN_C), totalMicros: f[o + H_RUN_TOTAL]!, tasks: f[o + H_RUN_TASKS]! },
      storageDayMicros: f[o + H_STORAGE_DAY]!,
      consecutiveAtCap: f[o + H_STREAK]!,
      hardDays: this.#hardDays[i]!,
    };
  }

  /** applyTask in place (the same buckets kept, the same sums). */
  #apply(f: Float64Array, o: number, t: TaskOutcome, unitCap: Micros): void {
    const day = dayOf(t.at);
    let n = f[o + H_DAYS]!;
    // The buckets are most recent first: the task's day, or where it goes.
    let j = 0;
    while (j < n && f[o + DAY0 + j * DAY_STRIDE + D_DAY]! > day) j++;
    let at = o + DAY0 + j * DAY_STRIDE;
    if (j === n || f[at + D_DAY] !== day) {
      if (j === n && n >= DAYS_KEPT) {
        // A day older than every kept one only changes the run total.
        at = -1;
      } else {
        if (n >= DAYS_KEPT) {
          // The oldest day leaves the window: it has finished, its storage is now part of the run.
          const storageDay = f[o + H_STORAGE_DAY]!;
          if (storageDay !== 0) {
            f[o + RUN_C + STORAGE_SLOT] = f[o + RUN_C + STORAGE_SLOT]! + storageDay;
            f[o + H_RUN_TOTAL] = f[o + H_RUN_TOTAL]! + storageDay;
          }
          n--;
        }
        // Move the older buckets one down, then a new, empty one at j.
        f.copyWithin(at + DAY_STRIDE, at, o + DAY0 + n * DAY_STRIDE);
        f.fill(0, at, at + DAY_STRIDE);
        f[at + D_DAY] = day;
        f[o + H_DAYS] = n + 1;
      }
    }
    const c = t.components;
    const ops = operationSum(c);
    if (at >= 0) {
      addOperationComponentsAt(f, at + D_C, c);
      f[at + D_OPS] = f[at + D_OPS]! + ops;
      f[at + D_TASKS] = f[at + D_TASKS]! + 1;
      if (t.failed) f[at + D_FAILED] = f[at + D_FAILED]! + 1;
    }
    addOperationComponentsAt(f, o + RUN_C, c);
    f[o + H_RUN_TOTAL] = f[o + H_RUN_TOTAL]! + ops;
    f[o + H_RUN_TASKS] = f[o + H_RUN_TASKS]! + 1;
    f[o + H_STREAK] = t.totalMicros >= unitCap ? f[o + H_STREAK]! + 1 : 0;
  }
}
