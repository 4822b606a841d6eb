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

/**
 * The platform health dashboard's PromQL (collector/platform-metrics.ts: the API's and runners' own
 * metrics, prom-client's process metrics). `$__rate_interval` is Grafana's; expandPlatformPromql fills it.
 */
export const PLATFORM_PROMQL = {
  apiRequestRate: p({ id: 'api_request_rate', expr: 'sum by (route) (rate(forge_api_requests_total[$__rate_interval]))', legend: '{{route}}' }),
  apiErrorRatio: p({ id: 'api_error_ratio', expr: 'sum(rate(forge_api_request_errors_total[$__rate_interval])) / clamp_min(sum(rate(forge_api_requests_total[$__rate_interval])), 1e-9)', legend: '5xx share' }),
  apiLatencyP99: p({ id: 'api_latency_p99', expr: 'histogram_quantile(0.99, sum by (route, le) (rate(forge_api_request_duration_seconds_bucket[$__rate_interval])))', legend: '{{route}} p99' }),
  runnerQueueDepth: p({ id: 'runner_queue_depth', expr: 'max by (queue) (forge_runner_queue_depth)', legend: '{{queue}} waiting' }),
  runnerInFlight: p({ id: 'runner_in_flight', expr: 'sum by (queue) (forge_runner_tasks_in_flight)', legend: '{{queue}} in flight' }),
  runnerConcurrency: p({ id: 'runner_concurrency', expr: 'sum by (queue) (forge_runner_concurrency)', legend: '{{queue}} slots' }),
  runnerHeartbeatAge: p({ id: 'runner_heartbeat_age', expr: 'time() - max by (instance) (forge_runner_last_heartbeat_timestamp_seconds)', legend: '{{instance}}' }),
  runnerKills: p({ id: 'runner_kills', expr: 'sum by (queue, reason) (increase(forge_runner_kills_total[$__range]))', legend: '{{queue}} {{reason}}' }),
  eventLoopLag: p({ id: 'event_loop_lag', expr: 'max by (service, instance) (forge_process_nodejs_eventloop_lag_p99_seconds)', legend: '{{service}} {{instance}}' }),
  heapUsed: p({ id: 'heap_used', expr: 'sum by (service, instance) (forge_process_nodejs_heap_size_used_bytes)', legend: '{{service}} {{instance}}' }),
  gcTime: p({ id: 'gc_time', expr: 'sum by (service, kind) (rate(forge_process_nodejs_gc_duration_seconds_sum[$__rate_interval]))', legend: '{{service}} {{kind}}' }),
  stopConditions: p({ id: 'stop_conditions', expr: 'sum(forge_stop_condition_warning_count) + sum(forge_stop_condition_hard_stop_count) + sum(forge_stop_condition_emergency_stop_count)', legend: 'escalations' }),
} as const satisfies Record<string, PromQuery>;

/** Grafana's interval variables as a Prometheus server takes them (for tests and the burn page). */
export function expandPlatformPromql(expr: string, o: { rateInterval: string; range: string }): string {
  return expr.replace(/\$__rate_interval/g, o.rateInterval).replace(/\$__range/g, o.range);
}
