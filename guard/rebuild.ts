import { addOperationComponents, DAY_MS, dayFromLabel, operationSum, withoutDaily, runScope, tenantScope, zeroComponents, type BudgetVersion, type DaySpend, type GuardStatus, type ScopeKey } from '../rules/index.ts';
import type { GuardrailEventKind, GuardrailEventRow, RunDayTotals, Store } from '../store/index.ts';
import { guardOfChange, type Guardrail, type LogSpend } from './guardrail.ts';
import type { HaltBus } from './halt-bus.ts';
import type { CounterSeed } from './ledger/redis-ledger.ts';

/** What the rebuild and the recompute read from the store. */
export type LogSource = Pick<Store, 'runDayTotals' | 'recentTaskTotals' | 'guardrailEvents' | 'taskTypeRecentTotals'>;

/** The guardrail_events kinds that make up the control state. */
const CONTROL_KINDS = ['state_change', 'acknowledgement', 'override', 'budget_change', 'hard_day'] as const;

function addDay(into: Map<number, DaySpend>, row: RunDayTotals): void {
  const day = dayFromLabel(row.day);
  const c = row.components;
  let d = into.get(day);
  if (!d) into.set(day, (d = { day, components: zeroComponents(), opsMicros: 0, tasks: 0, failed: 0 }));
  // Storage is a daily burn in the guardrail (storageDayMicros), not the tasks' allocated shares.
  d.components = withoutDaily(addOperationComponents(d.components, c));
  d.opsMicros += operationSum(c);
  d.tasks += row.tasks;
  d.failed += row.failed;
}

/**
 * Every scope's spend from the event log in one grouped scan: global, each tenant and each run, with every
 * UTC day that has activity and the cumulative run totals (storage excluded: the guardrail burns it).
 */
export async function spendFromLog(src: Pick<LogSource, 'runDayTotals'>, now: number): Promise<Map<ScopeKey, LogSpend>> {
  return spendOfRows(await readRunDays(src, now));
}

/** The log's totals per (tenant, run, UTC day): one grouped scan that the spend and the caps' counters share. */
function readRunDays(src: Pick<LogSource, 'runDayTotals'>, now: number): Promise<RunDayTotals[]> {
  // Up to a day ahead: finalized_at may run a few minutes ahead of this clock.
  return src.runDayTotals({ from: 0, to: now + DAY_MS });
}

/** Every scope's spend from the log's per-(tenant, run, UTC day) totals (a snapshot's, or the full scan's). */
export function spendOfRows(rows: readonly RunDayTotals[]): Map<ScopeKey, LogSpend> {
  const days = new Map<ScopeKey, Map<number, DaySpend>>();
  for (const row of rows) {
    for (const scope of ['global', tenantScope(row.tenantId), runScope(row.tenantId, row.runId)]) {
      let m = days.get(scope);
      if (!m) days.set(scope, (m = new Map()));
      addDay(m, row);
    }
  }
  const out = new Map<ScopeKey, LogSpend>();
  for (const [scope, m] of days) {
    const list = [...m.values()].sort((a, b) => a.day - b.day);
    const run = { components: zeroComponents(), totalMicros: 0, tasks: 0 };
    for (const d of list) {
      run.components = withoutDaily(addOperationComponents(run.components, d.components));
      run.totalMicros += d.opsMicros;
      run.tasks += d.tasks;
    }
    out.set(scope, { days: list, run });
  }
  return out;
}

/**
 * The admission ledger's spend counters as the event log has them: per scope, total USD micros per UTC day
 * of the last 8 days (the week window and a spare) and the run total. Used when Redis comes back empty.
 */
export async function capCountersFromLog(src: Pick<LogSource, 'runDayTotals'>, now: number): Promise<Map<ScopeKey, CounterSeed>> {
  return capCountersOfRows(await readRunDays(src, now), now);
}

/** The caps' counters from the log's per-(tenant, run, UTC day) totals. */
export function capCountersOfRows(rows: readonly RunDayTotals[], now: number): Map<ScopeKey, CounterSeed> {
  const firstDay = Math.floor(now / DAY_MS) - 7;
  const out = new Map<ScopeKey, { days: Map<number, number>; runMicros: number }>();
  for (const row of rows) {
    const day = dayFromLabel(row.day);
    for (const scope of ['global', tenantScope(row.tenantId), runScope(row.tenantId, row.runId)]) {
      let c = out.get(scope);
      if (!c) out.set(scope, (c = { days: new Map(), runMicros: 0 }));
      c.runMicros += row.totalMicros;
      if (day >= firstDay) c.days.set(day, (c.days.get(day) ?? 0) + row.totalMicros);
    }
  }
  return out;
}

/** The hourly recompute: every scope with activity (and every scope the guard knows) re-based on the log. */
export async function recompute(g: Guardrail, src: Pick<LogSource, 'runDayTotals'>, now: number, onScope?: (scope: ScopeKey) => void): Promise<number> {
  const spend = await spendFromLog(src, now);
  const scopes = new Set<ScopeKey>([...spend.keys(), ...g.knownScopes()]);
  for (const scope of scopes) {
    g.rebase(scope, spend.get(scope) ?? { days: [], run: { components: zeroComponents(), totalMicros: 0, tasks: 0 } });
    onScope?.(scope);
  }
  return scopes.size;
}

interface Folded {
  guard?: GuardStatus;
  budgets: BudgetVersion[];
  hardDays: number[];
}

/** Folds guardrail_events (oldest first) into each scope's control state: the newest seq wins. */
export function foldControlEvents(rows: readonly GuardrailEventRow[]): Map<ScopeKey, Folded> {
  const out = new Map<ScopeKey, Folded>();
  const get = (scope: ScopeKey): Folded => {
    let f = out.get(scope);
    if (!f) out.set(scope, (f = { budgets: [], hardDays: [] }));
    return f;
  };
  for (const r of rows) {
    const f = get(r.scope);
    const details = (r.details ?? {}) as { control?: { guard?: GuardStatus; budget?: BudgetVersion }; day?: string };
    if (r.kind === 'hard_day') {
      if (typeof details.day === 'string') f.hardDays.push(dayFromLabel(details.day));
      continue;
    }
    const budget = details.control?.budget;
    if (budget && !f.budgets.some((b) => b.version === budget.version)) f.budgets.push(budget);
    if (f.guard && r.seq < f.guard.seq) continue;
    f.guard = details.control?.guard
      ? { ...details.control.guard, seq: r.seq }
      : // Rows written before the control snapshot: the state and seq, nothing acknowledged or waived.
        { state: r.state as GuardStatus['state'], since: r.at, seq: r.seq, acknowledged: r.kind === 'acknowledgement', waived: [], dayWaivers: [] };
  }
  return out;
}


/**
 * Start-up: the control state from guardrail_events (states, acknowledgements, lifts and waivers, budget
 * versions, hard days), the bus's durable copy where it is newer (Redis), the unit-cap streaks and the
 * spend from the event log; then every scope is evaluated once. A restart so reaches the state it had and
 * announces only what is genuinely new (spend that arrived while it was down). The spend comes from
 * `runDays` when given (a snapshot plus the log since it: guard/control-snapshot.ts), else from a full scan.
 */
export async function rebuildControlState(
  g: Guardrail,
  deps: {
    store: LogSource;
    bus: Pick<HaltBus, 'current' | 'scopes'>;
    now: number;
    unitCapOf: (scope: ScopeKey) => { unitCap: number; k: number };
    onScope?: (scope: ScopeKey) => void;
    runDays?: readonly RunDayTotals[];
    /** More guardrail_events kinds to read in the same scan, for the caller (returned in `events`). */
    alsoKinds?: readonly GuardrailEventKind[];
  },
): Promise<{ scopes: number; spend: Map<ScopeKey, LogSpend>; capCounters: Map<ScopeKey, CounterSeed>; events: readonly GuardrailEventRow[] }> {
  const { store, now } = deps;
  // One read of each log: guardrail_events for the control state, the learned ratios and what the caller
  // also reads at start, the cost log's per-run-day totals for the guard's spend and the ledger's counters.
  const events = await store.guardrailEvents({ scope: { allTenants: true }, from: 0, to: now + DAY_MS, kinds: [...CONTROL_KINDS, 'estimate_learned', ...(deps.alsoKinds ?? [])], limit: 50_000_000 });
  const folded = foldControlEvents(events.filter((r) => (CONTROL_KINDS as readonly string[]).includes(r.kind)));
  const runDays = deps.runDays ?? (await readRunDays(store, now));
  const spend = spendOfRows(runDays);
  const scopes = new Set<ScopeKey>(['global', ...folded.keys(), ...spend.keys(), ...(await deps.bus.scopes())]);
  for (const scope of scopes) {
    const f = folded.get(scope) ?? { budgets: [], hardDays: [] };
    let guard = f.guard;
    const durable = await deps.bus.current(scope);
    if (durable && (!guard || durable.seq > guard.seq)) {
      guard = guardOfChange(durable);
      if (durable.control?.budget && !f.budgets.some((b) => b.version === durable.control!.budget!.version)) f.budgets.push(durable.control.budget);
    }
    g.seed(scope, { ...(guard ? { guard } : {}), budgets: f.budgets, hardDays: f.hardDays });
  }
  // The K-consecutive streaks, newest tasks first.
  const kMax = Math.min(1000, Math.max(1, ...[...scopes].map((s) => deps.unitCapOf(s).k)));
  for (const r of await store.recentTaskTotals({ from: now - 8 * DAY_MS, to: now + DAY_MS }, kMax)) {
    const { unitCap } = deps.unitCapOf(r.scope);
    let streak = 0;
    for (const t of r.totalsMicros) {
      if (t < unitCap) break;
      streak++;
    }
    g.seed(r.scope, { consecutiveAtCap: streak });
    scopes.add(r.scope);
  }
  for (const scope of scopes) {
    g.rebase(scope, spend.get(scope) ?? { days: [], run: { components: zeroComponents(), totalMicros: 0, tasks: 0 } });
    deps.onScope?.(scope);
  }
  // What the guard learned of estimates: the ratios from their last snapshot, the actual costs from the log.
  for (const r of events) {
    if (r.kind !== 'estimate_learned') continue;
    const d = (r.details ?? {}) as { task_type?: unknown; ratios_ppm?: unknown };
    if (typeof d.task_type === 'string' && Array.isArray(d.ratios_ppm) && r.tenantId) g.learned.seedRatios(r.tenantId, d.task_type, d.ratios_ppm.map(Number));
  }
  for (const t of await store.taskTypeRecentTotals({ from: now - 8 * DAY_MS, to: now + DAY_MS }, 200)) g.learned.seedCosts(t.tenantId, t.taskType, [...t.totalsMicros].reverse());
  return { scopes: scopes.size, spend, capCounters: capCountersOfRows(runDays, now), events };
}
