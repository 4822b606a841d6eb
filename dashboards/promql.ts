/**
 * The PromQL the dashboards run against Prometheus (the collector's /metrics: canonical metric names with
 * `scope` and `tenant` labels, see collector/metrics.ts). `$tenant` is the dashboard's tenant variable.
 * Budget bands and live totals are gauges in USD; `forge_guardrail_state` is 0 NORMAL .. 3 EMERGENCY_STOP.
 */

export interface PromQuery {
  id: string;
  expr: string;
  /** Legend ({{label}} templates). */
  legend: string;
}

const TENANT_SCOPE = 'scope="tenant:$tenant"';
const p = (x: PromQuery): PromQuery => x;

export const PROMQL = {
  /** Guardrail state of the tenant's scopes (the tenant and each of its runs). */
  guardrailStateTenant: p({ id: 'guardrail_state_tenant', expr: 'max by (scope) (forge_guardrail_state{tenant="$tenant"})', legend: '{{scope}}' }),
  /** Guardrail state of the global scope. */
  guardrailStateGlobal: p({ id: 'guardrail_state_global', expr: 'max by (scope) (forge_guardrail_state{scope="global"})', legend: '{{scope}}' }),
  daySoft: p({ id: 'day_soft', expr: `max(forge_budget_day_soft_usd{${TENANT_SCOPE}})`, legend: 'B_day_soft' }),
  dayHard: p({ id: 'day_hard', expr: `max(forge_budget_day_hard_usd{${TENANT_SCOPE}})`, legend: 'B_day_hard' }),
  weekSoft: p({ id: 'week_soft', expr: `max(forge_budget_week_soft_usd{${TENANT_SCOPE}})`, legend: 'B_week_soft' }),
  weekHard: p({ id: 'week_hard', expr: `max(forge_budget_week_hard_usd{${TENANT_SCOPE}})`, legend: 'B_week_hard' }),
  /** Today's live total of the tenant (UTC day), USD. */
  dayLive: p({ id: 'day_live', expr: `max(forge_cost_total_day_usd{${TENANT_SCOPE}})`, legend: 'today' }),
  /** Today's total as a share of B_day_hard (0.8 = the default soft band, 1.1 = emergency). */
  dayUtilisation: p({
    id: 'day_utilisation',
    expr: `max(forge_cost_total_day_usd{${TENANT_SCOPE}}) / max(forge_budget_day_hard_usd{${TENANT_SCOPE}})`,
    legend: 'day / B_day_hard',
  }),
  /** Rolling 7 days of the tenant, live, USD. */
  weekLive: p({ id: 'week_live', expr: `max(forge_cost_total_week_usd{${TENANT_SCOPE}})`, legend: 'rolling 7 days' }),
  /** Run spend / run cap for the tenant and each of its runs. */
  runUtilisation: p({
    id: 'run_utilisation',
    expr: 'max by (scope) (forge_cost_total_run_usd{tenant="$tenant"}) / max by (scope) (forge_budget_run_cap_usd{tenant="$tenant"})',
    legend: '{{scope}}',
  }),
  /** Days until B_run_cap at the 7-day moving average burn (+Inf when nothing was spent this week). */
  runwayDays: p({
    id: 'runway_days',
    expr: `clamp_min(max(forge_budget_run_cap_usd{${TENANT_SCOPE}}) - max(forge_cost_total_run_usd{${TENANT_SCOPE}}), 0) / (max(forge_cost_total_week_usd{${TENANT_SCOPE}}) / 7)`,
    legend: 'runway (days)',
  }),
} as const satisfies Record<string, PromQuery>;

/** The tenant variable's options: tenants that have a live day total (not the overflow bucket). */
export const TENANT_VARIABLE_QUERY = 'label_values(forge_cost_total_day_usd{tenant!=""}, tenant)';
export const TENANT_VARIABLE_REGEX = '/^(?!__overflow__$).+$/';

const TENANT_RE = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * `$tenant` / `${tenant}` replaced as the Prometheus datasource does for a single plain value. Tenant ids
 * are letters, digits and `._-` (the store's rule), which need no escaping inside a PromQL string.
 */
export function expandPromql(expr: string, tenant: string): string {
  if (!TENANT_RE.test(tenant)) throw new Error(`tenant must be 1-64 letters, digits or ._-, got ${JSON.stringify(tenant)}`);
  return expr.replace(/\$\{tenant\}|\$tenant\b/g, tenant);
}
