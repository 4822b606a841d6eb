/**
 * The panel queries against the event store, written once and used by the Grafana dashboards (through the
 * ClickHouse plugin) and by the burn page (through `expandForEngine` on the embedded engine).
 *
 * Rules every query keeps (a test checks them):
 * - a tenant filter (`tenant_id = ${tenant:singlequote}`) and a time bound on event_time / at;
 * - reads through FINAL, so an event that reached the table twice (same tenant, event_time, event_id) counts
 *   once, exactly as the store's own queries read it;
 * - money is summed in integer micro-dollars and divided by 1e6 once, at the end (USD for display);
 * - days are UTC calendar days (event_time is DateTime64(3, 'UTC'); boundaries say 'UTC' explicitly);
 * - `$__fromTime` / `$__toTime` are always followed by `)` (see macros.ts for why).
 *
 * Variables: `database` (constant, default forge), `tenant`, `run` (custom all value `'__all__'`).
 */

import { COMPONENTS } from '../rules/index.ts';
import { componentColumn } from '../store/index.ts';

/** The run variable's custom all value, written as Grafana inserts it (unformatted). */
export const ALL_RUNS = "'__all__'";

const RUN_FILTER = `(\${run:singlequote} = '__all__' OR run_id = \${run:singlequote})`;
const TENANT_FILTER = `tenant_id = \${tenant:singlequote}`;
const EVENTS = `\${database:raw}.cost_events FINAL`;
const GUARDRAIL = `\${database:raw}.guardrail_events FINAL`;
const RANK = `['NORMAL', 'WARNING', 'HARD_STOP', 'EMERGENCY_STOP']`;
/** A state change that raised the level (the stop-condition counters count these, too). */
const ESCALATION = `indexOf(${RANK}, state) > indexOf(${RANK}, previous) AND state IN ('WARNING', 'HARD_STOP', 'EMERGENCY_STOP')`;
/** guardrail_events has no run_id: a run narrows to its scope key. */
const RUN_SCOPE_FILTER = `(\${run:singlequote} = '__all__' OR scope = concat('run:', tenant_id, '/', \${run:singlequote}))`;

export type QueryFormat = 'table' | 'time_series';

export interface PanelQuery {
  /** Stable id (also the refId prefix in the dashboards). */
  id: string;
  title: string;
  sql: string;
  format: QueryFormat;
  /** The result columns, in order. */
  columns: readonly string[];
  /** Columns holding text (labels, states); `time` holds a UTC Date or DateTime; every other column is a number. */
  text?: readonly string[];
}

const q = (p: PanelQuery): PanelQuery => p;

export const SQL = {
  /** Total burn per UTC day over the dashboard range, zero-filled (bars under the day bands). */
  dailyBurn: q({
    id: 'daily_burn',
    title: 'Daily burn',
    format: 'time_series',
    columns: ['time', 'total_usd'],
    sql: `SELECT toDate(event_time) AS time, sum(total_micros) / 1e6 AS total_usd
FROM ${EVENTS}
WHERE ${TENANT_FILTER}
  AND ${RUN_FILTER}
  AND $__timeFilter(event_time)
GROUP BY time
ORDER BY time WITH FILL FROM toDate($__fromTime, 'UTC') TO toDate($__toTime, 'UTC') + 1`,
  }),

  /** Burn per UTC day by component (stacked). */
  composition: q({
    id: 'composition',
    title: 'Cost composition by component',
    format: 'time_series',
    columns: ['time', ...COMPONENTS],
    sql: `SELECT toDate(event_time) AS time,
${COMPONENTS.map((k) => `  sum(${componentColumn(k)}) / 1e6 AS ${k}`).join(',\n')}
FROM ${EVENTS}
WHERE ${TENANT_FILTER}
  AND ${RUN_FILTER}
  AND $__timeFilter(event_time)
GROUP BY time
ORDER BY time WITH FILL FROM toDate($__fromTime, 'UTC') TO toDate($__toTime, 'UTC') + 1`,
  }),

  /**
   * Unit economics per UTC day, zero-filled: USD per accepted task (every finalized task, any status) and per
   * successful task, as forge.cost.usd_per_accepted_task and forge.cost.usd_per_successful_task (a failed
   * task's spend counts in both). NULL on a day without such tasks.
   */
  unitEconomics: q({
    id: 'unit_economics',
    title: 'Unit economics',
    format: 'time_series',
    columns: ['time', 'operations', 'succeeded', 'total_usd', 'usd_per_accepted_task', 'usd_per_successful_task'],
    sql: `SELECT toDate(event_time) AS time,
  count() AS operations,
  countIf(status = 'success') AS succeeded,
  sum(total_micros) / 1e6 AS total_usd,
  if(operations = 0, NULL, total_usd / operations) AS usd_per_accepted_task,
  if(succeeded = 0, NULL, total_usd / succeeded) AS usd_per_successful_task
FROM ${EVENTS}
WHERE ${TENANT_FILTER}
  AND ${RUN_FILTER}
  AND $__timeFilter(event_time)
GROUP BY time
ORDER BY time WITH FILL FROM toDate($__fromTime, 'UTC') TO toDate($__toTime, 'UTC') + 1`,
  }),

  /** Escalations into each stop level in the 24 hours ending at the range end. */
  stopConditions24h: q({
    id: 'stop_conditions_24h',
    title: 'Stop conditions, last 24 h',
    format: 'table',
    columns: ['warning', 'hard_stop', 'emergency_stop'],
    sql: `SELECT countIf(state = 'WARNING') AS warning,
  countIf(state = 'HARD_STOP') AS hard_stop,
  countIf(state = 'EMERGENCY_STOP') AS emergency_stop
FROM ${GUARDRAIL}
WHERE ${TENANT_FILTER}
  AND ${RUN_SCOPE_FILTER}
  AND kind = 'state_change'
  AND ${ESCALATION}
  AND at > ($__toTime - INTERVAL 1 DAY)
  AND at <= ($__toTime)`,
  }),

  /** The latest escalations in the range, newest first. */
  recentStops: q({
    id: 'recent_stops',
    title: 'Recent stop conditions',
    format: 'table',
    columns: ['time', 'scope', 'previous', 'state', 'reason'],
    text: ['scope', 'previous', 'state', 'reason'],
    sql: `SELECT at AS time, scope, previous, state, reason
FROM ${GUARDRAIL}
WHERE ${TENANT_FILTER}
  AND ${RUN_SCOPE_FILTER}
  AND kind = 'state_change'
  AND ${ESCALATION}
  AND $__timeFilter(at)
ORDER BY at DESC, seq DESC
LIMIT 50`,
  }),

  /** Burn per ISO week (Monday, UTC). */
  weeklyBurn: q({
    id: 'weekly_burn',
    title: 'Weekly burn',
    format: 'time_series',
    columns: ['time', 'total_usd'],
    sql: `SELECT toMonday(event_time) AS time, sum(total_micros) / 1e6 AS total_usd
FROM ${EVENTS}
WHERE ${TENANT_FILTER}
  AND ${RUN_FILTER}
  AND $__timeFilter(event_time)
GROUP BY time
ORDER BY time`,
  }),

  /**
   * For each UTC day of the range: the rolling 7-day burn (the 7 days ending that day, as B_week_* are
   * judged) and its 7-day moving average. Reads 6 days before the range so the first days are whole.
   */
  rollingWeek: q({
    id: 'rolling_week',
    title: 'Rolling 7-day burn',
    format: 'time_series',
    columns: ['time', 'rolling_7d_usd', 'avg_7d_usd'],
    sql: `SELECT time, rolling_7d_usd, rolling_7d_usd / 7 AS avg_7d_usd
FROM (
  SELECT day AS time, sum(day_usd) OVER (ORDER BY day ROWS BETWEEN 6 PRECEDING AND CURRENT ROW) AS rolling_7d_usd
  FROM (
    SELECT toDate(event_time) AS day, sum(total_micros) / 1e6 AS day_usd
    FROM ${EVENTS}
    WHERE ${TENANT_FILTER}
      AND ${RUN_FILTER}
      AND event_time >= (toStartOfDay($__fromTime, 'UTC') - INTERVAL 6 DAY)
      AND event_time <= ($__toTime)
    GROUP BY day
    ORDER BY day WITH FILL FROM toDate($__fromTime, 'UTC') - 6 TO toDate($__toTime, 'UTC') + 1
  )
)
WHERE time >= toDate($__fromTime, 'UTC')
ORDER BY time`,
  }),

  /**
   * What the runway is computed from: cumulative spend up to the range end, the rolling 7 days ending then
   * (today included) and its daily average. Runway = (B_run_cap - run_spend_usd) / avg_day_usd.
   */
  runwayInputs: q({
    id: 'runway_inputs',
    title: 'Run spend and 7-day average burn',
    format: 'table',
    columns: ['run_spend_usd', 'week_usd', 'avg_day_usd'],
    sql: `SELECT sum(total_micros) / 1e6 AS run_spend_usd,
  sumIf(total_micros, event_time >= (toStartOfDay($__toTime, 'UTC') - INTERVAL 6 DAY)) / 1e6 AS week_usd,
  week_usd / 7 AS avg_day_usd
FROM ${EVENTS}
WHERE ${TENANT_FILTER}
  AND ${RUN_FILTER}
  AND event_time <= ($__toTime)`,
  }),

  efficiencyByTaskType: efficiency('task_type', 'task_type', 'Efficiency by task type'),
  efficiencyByModel: efficiency('model_name', `if(model = '', '(none)', toString(model))`, 'Efficiency by model'),
  efficiencyByEnvironment: efficiency('environment', 'environment', 'Efficiency by environment'),
} as const satisfies Record<string, PanelQuery>;

function efficiency(key: string, expr: string, title: string): PanelQuery {
  const select = expr === key ? key : `${expr} AS ${key}`;
  return {
    id: `efficiency_${key}`,
    title,
    format: 'table',
    columns: [key, 'operations', 'succeeded', 'success_rate', 'total_usd', 'cost_per_operation_usd', 'cost_per_success_usd'],
    text: [key],
    sql: `SELECT ${select},
  count() AS operations,
  countIf(status = 'success') AS succeeded,
  succeeded / operations AS success_rate,
  sum(total_micros) / 1e6 AS total_usd,
  total_usd / operations AS cost_per_operation_usd,
  if(succeeded = 0, NULL, total_usd / succeeded) AS cost_per_success_usd
FROM ${EVENTS}
WHERE ${TENANT_FILTER}
  AND ${RUN_FILTER}
  AND $__timeFilter(event_time)
GROUP BY ${key}
ORDER BY total_usd DESC, ${key}`,
  };
}

/** The run variable's options: runs of the tenant with events in the range. */
export const RUN_VARIABLE_SQL = `SELECT DISTINCT run_id
FROM ${EVENTS}
WHERE ${TENANT_FILTER}
  AND $__timeFilter(event_time)
ORDER BY run_id`;

/** The run variable's query as a panel query (the report API serves it to the embedded dashboards). */
export const RUNS: PanelQuery = { id: 'runs', title: 'Runs', format: 'table', columns: ['run_id'], text: ['run_id'], sql: RUN_VARIABLE_SQL };

export type SqlId = keyof typeof SQL;

/** Every query the report API runs for a dashboard, by id: the panels' and the run variable's. */
export const PANEL_QUERIES: Readonly<Record<string, PanelQuery>> = Object.fromEntries([...Object.values(SQL), RUNS].map((x) => [x.id, x]));

/** What a result column holds (see PanelQuery.text). */
export function columnKind(q: PanelQuery, column: string): 'time' | 'text' | 'number' {
  if (column === 'time') return 'time';
  return q.text?.includes(column) ? 'text' : 'number';
}
