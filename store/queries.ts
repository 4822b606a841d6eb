import type { ClickHouseClient } from '@clickhouse/client';
import { addComponentsInto, COMPONENTS, type Component, type ComponentMicros } from '../rules/index.ts';
import { STORE_ERROR_CODES, StoreError } from './errors.ts';
import { componentColumn } from './rows.ts';
import { checkTime, scopeSql, type LogScope } from './scope.ts';

/** Cost components, USD micros (one per COMPONENT_SPECS entry). */
/** Rows of a read query as JSON objects; a failure is a StoreError QUERY (a StoreError passes as it is). */
export async function queryRows<T>(client: ClickHouseClient, query: string, params: Record<string, unknown>): Promise<T[]> {
  try {
    const rs = await client.query({ query, query_params: params, format: 'JSONEachRow' });
    return await rs.json<T>();
  } catch (e) {
    if (e instanceof StoreError) throw e;
    throw new StoreError(STORE_ERROR_CODES.QUERY, `store query failed: ${(e as Error).message}`, { cause: e });
  }
}

export type Components = ComponentMicros;

/** Sums over a set of events (each event_id once). Money in USD micros. */
export interface Totals {
  components: Components;
  totalMicros: number;
  /** Finalized tasks (every status). */
  tasks: number;
  succeeded: number;
  /** Tasks that failed or were retried (the cost model's N_fail). */
  failed: number;
  /** Of `failed`, those retried. */
  retried: number;
}

export interface DayTotals extends Totals {
  /** UTC day, YYYY-MM-DD. */
  day: string;
}

export interface HourTotals extends Totals {
  /** Start of the UTC hour, epoch ms. */
  hour: number;
}

export interface WeekTotals extends Totals {
  /** Monday of the ISO week (UTC), YYYY-MM-DD. */
  weekStart: string;
}

export interface ScopeRollup {
  /** The last 8 UTC days ending today (the day of `now`), oldest first, zero-filled. */
  days: DayTotals[];
  /** Rolling 7 days ending now, today included. */
  week: Totals;
  /** Cumulative for the scope since `since` (default: all of it), up to now. */
  run: Totals;
}

/** One run's totals on one UTC day (the guard's rebuild reads every scope at once from these). */
export interface RunDayTotals extends Totals {
  tenantId: string;
  runId: string;
  /** UTC day, YYYY-MM-DD. */
  day: string;
}

/** The newest task totals of one scope key, newest first (for the unit-cap streak). */
export interface RecentTaskTotals {
  /** `global`, `tenant:<id>` or `run:<tenant>/<run>`. */
  scope: string;
  totalsMicros: number[];
}

export type BreakdownBy = 'task_type' | 'model' | 'environment' | 'run_id' | 'status' | 'tenant_id';

/** A breakdown dimension maps to a fixed column; never user text in SQL. */
const BREAKDOWN_COLUMNS: Record<BreakdownBy, string> = {
  task_type: 'task_type',
  model: 'model',
  environment: 'environment',
  run_id: 'run_id',
  status: 'toString(status)',
  tenant_id: 'tenant_id',
};

export interface BreakdownRow extends Totals {
  key: string;
}

export interface UnitEconomics {
  totalMicros: number;
  succeeded: number;
  tasks: number;
  /** totalMicros / succeeded, rounded down; undefined when nothing succeeded. */
  costPerSuccessMicros: number | undefined;
  /** totalMicros / tasks, rounded down; undefined without tasks. */
  costPerTaskMicros: number | undefined;
}

export interface Composition {
  components: Components;
  totalMicros: number;
  /** Share of each component in the total (0..1); all 0 when the total is 0. */
  shares: Components;
}

export interface TimeRange {
  /** Inclusive, epoch ms. */
  from: number;
  /** Exclusive, epoch ms. */
  to: number;
}

const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;

const AGG = `${COMPONENTS.map((k) => `sum(${componentColumn(k)}) AS ${k}`).join(', ')}, sum(total_micros) AS total, count() AS tasks,
  countIf(status = 'success') AS succeeded, countIf(status != 'success') AS failed, countIf(status = 'retried') AS retried`;

export type AggRow = Record<Component | 'total' | 'tasks' | 'succeeded' | 'failed' | 'retried', number | string>;

function num(v: number | string | undefined, what: string): number {
  const n = Number(v ?? 0);
  if (!Number.isSafeInteger(n)) throw new StoreError(STORE_ERROR_CODES.QUERY, `${what} = ${String(v)} is not a safe integer`);
  return n;
}

export function toTotals(r: AggRow | undefined): Totals {
  return {
    components: Object.fromEntries(COMPONENTS.map((k) => [k, num(r?.[k], k)])) as Components,
    totalMicros: num(r?.total, 'total'),
    tasks: num(r?.tasks, 'tasks'),
    succeeded: num(r?.succeeded, 'succeeded'),
    failed: num(r?.failed, 'failed'),
    retried: num(r?.retried, 'retried'),
  };
}

export function emptyTotals(): Totals {
  return toTotals(undefined);
}

export function utcDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

export function startOfUtcDay(ms: number): number {
  return Math.floor(ms / DAY_MS) * DAY_MS;
}

function checkRange(r: TimeRange): TimeRange {
  const from = checkTime(r?.from, 'range.from');
  const to = checkTime(r?.to, 'range.to');
  if (to < from) throw new StoreError(STORE_ERROR_CODES.INVALID, 'range.to must not be before range.from', { field: 'range.to' });
  return { from, to };
}

/**
 * Reads the log. Every query has the scope's tenant filter (or the explicit all-tenants flag) and a time
 * bound on event_time, with {name:Type} parameters, and reads through FINAL so a row that reached the table
 * twice (same tenant, event_id, event_time) counts once.
 */
export class LogQueries {
  readonly #client: ClickHouseClient;
  readonly #table: string;

  constructor(client: ClickHouseClient, database: string) {
    this.#client = client;
    this.#table = `${database}.cost_events`;
  }

  #rows<T>(query: string, params: Record<string, unknown>): Promise<T[]> {
    return queryRows<T>(this.#client, query, params);
  }

  /** Grouped aggregate over [from, to). `group` is a fixed SQL expression chosen in this file. */
  async #grouped(scope: LogScope, range: TimeRange, group: string | undefined): Promise<Array<AggRow & { k?: string | number }>> {
    const s = scopeSql(scope);
    const { from, to } = checkRange(range);
    const sql = `SELECT ${group ? `${group} AS k, ` : ''}${AGG}
FROM ${this.#table} FINAL
WHERE ${s.where}
  AND event_time >= fromUnixTimestamp64Milli({from:Int64}, 'UTC')
  AND event_time < fromUnixTimestamp64Milli({to:Int64}, 'UTC')
${group ? 'GROUP BY k ORDER BY k' : ''}`;
    return this.#rows(sql, { ...s.params, from, to });
  }

  /** Totals over [from, to). */
  async totals(scope: LogScope, range: TimeRange): Promise<Totals> {
    const [r] = await this.#grouped(scope, range, undefined);
    return toTotals(r);
  }

  /** One row per UTC day of the `days` days ending on the day of `now` (oldest first, zero-filled). */
  async dailyTotals(scope: LogScope, now: number, days: number): Promise<DayTotals[]> {
    checkTime(now, 'now');
    if (!Number.isInteger(days) || days < 1 || days > 3660) throw new StoreError(STORE_ERROR_CODES.INVALID, 'days must be 1..3660', { field: 'days' });
    const end = startOfUtcDay(now) + DAY_MS;
    const start = end - days * DAY_MS;
    const rows = await this.#grouped(scope, { from: start, to: end }, 'toString(toDate(event_time))');
    const byDay = new Map(rows.map((r) => [String(r.k), r]));
    const out: DayTotals[] = [];
    for (let d = start; d < end; d += DAY_MS) {
      const day = utcDay(d);
      out.push({ day, ...toTotals(byDay.get(day)) });
    }
    return out;
  }

  /** One row per UTC hour in [from, to) that has events (from/to are floored to the hour). */
  async hourlyTotals(scope: LogScope, range: TimeRange): Promise<HourTotals[]> {
    const r = checkRange(range);
    const rows = await this.#grouped(
      scope,
      { from: Math.floor(r.from / HOUR_MS) * HOUR_MS, to: r.to },
      'toUnixTimestamp(toStartOfHour(event_time)) * 1000',
    );
    return rows.map((x) => ({ hour: Number(x.k), ...toTotals(x) }));
  }

  /** Totals of the UTC day of `now`, up to now. */
  async dayTotal(scope: LogScope, now: number): Promise<Totals> {
    return this.totals(scope, { from: startOfUtcDay(checkTime(now, 'now')), to: now + 1 });
  }

  /** Rolling 7 days ending now, today included (the cost model's Cost_total_week). */
  async rollingWeekTotal(scope: LogScope, now: number): Promise<Totals> {
    checkTime(now, 'now');
    return this.totals(scope, { from: startOfUtcDay(now) - 6 * DAY_MS, to: now + 1 });
  }

  /** ISO weeks (Monday, UTC), the `weeks` weeks ending with the week of `now`, zero-filled. */
  async weeklyTotals(scope: LogScope, now: number, weeks: number): Promise<WeekTotals[]> {
    checkTime(now, 'now');
    if (!Number.isInteger(weeks) || weeks < 1 || weeks > 520) throw new StoreError(STORE_ERROR_CODES.INVALID, 'weeks must be 1..520', { field: 'weeks' });
    const today = startOfUtcDay(now);
    const dow = (new Date(today).getUTCDay() + 6) % 7; // 0 = Monday
    const monday = today - dow * DAY_MS;
    const start = monday - (weeks - 1) * 7 * DAY_MS;
    const rows = await this.#grouped(scope, { from: start, to: monday + 7 * DAY_MS }, 'toString(toMonday(event_time))');
    const byWeek = new Map(rows.map((r) => [String(r.k), r]));
    const out: WeekTotals[] = [];
    for (let w = start; w <= monday; w += 7 * DAY_MS) out.push({ weekStart: utcDay(w), ...toTotals(byWeek.get(utcDay(w))) });
    return out;
  }

  /** Cumulative totals of the scope from `since` (default 0: the whole log) up to now. */
  async cumulativeTotal(scope: LogScope, now: number, since = 0): Promise<Totals> {
    return this.totals(scope, { from: checkTime(since, 'since'), to: checkTime(now, 'now') + 1 });
  }

  /**
   * What the rules engine and the hourly recompute read: the last 8 UTC days, the rolling week, and the
   * scope's cumulative totals (for a run scope: the run total).
   */
  async scopeRollup(scope: LogScope, now: number, opts: { since?: number } = {}): Promise<ScopeRollup> {
    const days = await this.dailyTotals(scope, now, 8);
    const weekDays = days.slice(-7);
    const week = emptyTotals();
    for (const d of weekDays) addInto(week, d);
    const run = await this.cumulativeTotal(scope, now, opts.since ?? 0);
    return { days, week, run };
  }

  /** Totals per value of one dimension over [from, to), largest total first. */
  async breakdown(scope: LogScope, range: TimeRange, by: BreakdownBy): Promise<BreakdownRow[]> {
    const col = BREAKDOWN_COLUMNS[by];
    if (!col) throw new StoreError(STORE_ERROR_CODES.INVALID, `by must be one of ${Object.keys(BREAKDOWN_COLUMNS).join(', ')}`, { field: 'by' });
    const rows = await this.#grouped(scope, range, col);
    return rows.map((r) => ({ key: String(r.k), ...toTotals(r) })).sort((a, b) => b.totalMicros - a.totalMicros || a.key.localeCompare(b.key));
  }

  /**
   * Totals per (tenant, run, UTC day) over [from, to), for every tenant: the guard's start-up rebuild and
   * hourly recompute derive global, tenant and run scopes from this one grouped scan.
   */
  async runDayTotals(range: TimeRange): Promise<RunDayTotals[]> {
    const { from, to } = checkRange(range);
    const rows = await this.#rows<AggRow & { t: string; r: string; d: string }>(
      `SELECT tenant_id AS t, run_id AS r, toString(toDate(event_time)) AS d, ${AGG}
FROM ${this.#table} FINAL
WHERE 1 = 1 /* all tenants, explicitly */
  AND event_time >= fromUnixTimestamp64Milli({from:Int64}, 'UTC')
  AND event_time < fromUnixTimestamp64Milli({to:Int64}, 'UTC')
GROUP BY t, r, d ORDER BY d`,
      { from, to },
    );
    return rows.map((r) => ({ tenantId: String(r.t), runId: String(r.r), day: String(r.d), ...toTotals(r) }));
  }

  /**
   * The `n` newest task totals (by event_time) of every global, tenant and run scope with events in
   * [from, to), newest first: the K-consecutive unit-cap streak is rebuilt from these.
   */
  async recentTaskTotals(range: TimeRange, n: number): Promise<RecentTaskTotals[]> {
    const { from, to } = checkRange(range);
    if (!Number.isInteger(n) || n < 1 || n > 1000) throw new StoreError(STORE_ERROR_CODES.INVALID, 'n must be 1..1000', { field: 'n' });
    const where = `WHERE 1 = 1 /* all tenants, explicitly */
  AND event_time >= fromUnixTimestamp64Milli({from:Int64}, 'UTC')
  AND event_time < fromUnixTimestamp64Milli({to:Int64}, 'UTC')`;
    // Per level: the scope key, the newest-first order within it, and LIMIT n BY that level.
    const levels: Array<{ key: string; order: string; by: string }> = [
      { key: "'global'", order: 'event_time DESC, event_id DESC', by: '' },
      { key: "concat('tenant:', tenant_id)", order: 'tenant_id, event_time DESC, event_id DESC', by: 'BY tenant_id' },
      { key: "concat('run:', tenant_id, '/', run_id)", order: 'tenant_id, run_id, event_time DESC, event_id DESC', by: 'BY tenant_id, run_id' },
    ];
    const out: RecentTaskTotals[] = [];
    for (const { key, order, by } of levels) {
      const rows = await this.#rows<{ k: string; v: string | number }>(
        `SELECT ${key} AS k, total_micros AS v FROM ${this.#table} FINAL ${where} ORDER BY ${order} LIMIT {n:UInt32} ${by}`,
        { from, to, n },
      );
      const byKey = new Map<string, number[]>();
      for (const r of rows) {
        let list = byKey.get(r.k);
        if (!list) byKey.set(r.k, (list = []));
        list.push(num(r.v, 'total'));
      }
      for (const [scope, totalsMicros] of byKey) out.push({ scope, totalsMicros });
    }
    return out;
  }

  /**
   * The `n` newest task totals (newest first) of every tenant's task types with events in [from, to): the
   * guard's learned cost quantiles are rebuilt from these at start.
   */
  async taskTypeRecentTotals(range: TimeRange, n: number): Promise<Array<{ tenantId: string; taskType: string; totalsMicros: number[] }>> {
    const { from, to } = checkRange(range);
    if (!Number.isInteger(n) || n < 1 || n > 1000) throw new StoreError(STORE_ERROR_CODES.INVALID, 'n must be 1..1000', { field: 'n' });
    const rows = await this.#rows<{ t: string; k: string; v: string | number }>(
      `SELECT tenant_id AS t, task_type AS k, total_micros AS v FROM ${this.#table} FINAL
WHERE 1 = 1 /* all tenants, explicitly */
  AND event_time >= fromUnixTimestamp64Milli({from:Int64}, 'UTC')
  AND event_time < fromUnixTimestamp64Milli({to:Int64}, 'UTC')
ORDER BY tenant_id, task_type, event_time DESC, event_id DESC LIMIT {n:UInt32} BY tenant_id, task_type`,
      { from, to, n },
    );
    const out = new Map<string, { tenantId: string; taskType: string; totalsMicros: number[] }>();
    for (const r of rows) {
      const key = `${r.t}\u0000${r.k}`;
      let e = out.get(key);
      if (!e) out.set(key, (e = { tenantId: String(r.t), taskType: String(r.k), totalsMicros: [] }));
      e.totalsMicros.push(num(r.v, 'total'));
    }
    return [...out.values()];
  }

  /** Composition by component over [from, to). */
  async composition(scope: LogScope, range: TimeRange): Promise<Composition> {
    const t = await this.totals(scope, range);
    const share = (v: number): number => (t.totalMicros === 0 ? 0 : v / t.totalMicros);
    const c = t.components;
    return {
      components: c,
      totalMicros: t.totalMicros,
      shares: Object.fromEntries(COMPONENTS.map((k) => [k, share(c[k])])) as Components,
    };
  }

  /** Cost per successful task (and per task) over [from, to). All spend counts, failed tasks' included. */
  async unitEconomics(scope: LogScope, range: TimeRange): Promise<UnitEconomics> {
    const t = await this.totals(scope, range);
    return {
      totalMicros: t.totalMicros,
      succeeded: t.succeeded,
      tasks: t.tasks,
      costPerSuccessMicros: t.succeeded === 0 ? undefined : Math.floor(t.totalMicros / t.succeeded),
      costPerTaskMicros: t.tasks === 0 ? undefined : Math.floor(t.totalMicros / t.tasks),
    };
  }
}

export function addInto(acc: Totals, t: Totals): void {
  addComponentsInto(acc.components, t.components);
  acc.totalMicros += t.totalMicros;
  acc.tasks += t.tasks;
  acc.succeeded += t.succeeded;
  acc.failed += t.failed;
  acc.retried += t.retried;
}
