import { z } from 'zod';
import { COMPONENTS, componentSpec, microsToUsd, type Component } from '../rules/index.ts';
import type { AlertsConfig } from './config.ts';
import { link, truncate } from './format.ts';
import type { AlertView } from './types.ts';

/**
 * The tier's executions of the month, the estimated monthly cost against the monthly budget (or cap), or a
 * user's platform-key LLM spend of the UTC day against the plan's daily cap.
 */
export type SpendMetric = 'executions_month' | 'monthly_cost' | 'daily_spend';

/** The percentages of a limit at which a user is told (once each per period). */
export const SPEND_PERCENTS = [50, 80, 100] as const;

/** A user's spend reached a percentage of a limit; delivered to the user's email (route `user_spend`). */
export interface SpendAlert {
  kind: 'user_spend';
  tenantId: string;
  /** The user concerned; absent for a tenant-wide limit. */
  userId?: string;
  /** Who is told: one address or several (a team's users); absent: the route's configured `to`. */
  email?: string | readonly string[];
  metric: SpendMetric;
  /** 50, 80 or 100. */
  percent: number;
  /** Executions, or USD micros (the estimate for monthly_cost). */
  value: number;
  limit: number;
  unit: 'count' | 'usd_micros';
  /** Start of the period (UTC month; UTC day for daily_spend), epoch ms: with metric and percent, what makes the alert once-only. */
  windowStart: number;
  /** Trailing 7-day burn, USD micros. */
  weekMicros: number;
  /** The component that cost most this period. */
  topComponent: Component;
  /** Epoch ms. */
  at: number;
}

const EMAIL = z.string().regex(/^[^\s@<>,;"]{1,64}@[^\s@<>,;"]{1,255}$/, 'is not an email address');

export const spendAlertSchema = z.object({
  kind: z.literal('user_spend'),
  tenantId: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/),
  userId: z.string().regex(/^[A-Za-z0-9._:@-]{1,128}$/).optional(),
  email: z.union([EMAIL, z.array(EMAIL).min(1).max(100)]).optional(),
  metric: z.enum(['executions_month', 'monthly_cost', 'daily_spend']),
  percent: z.number().int().min(1).max(1000),
  value: z.number().int().nonnegative(),
  limit: z.number().int().positive(),
  unit: z.enum(['count', 'usd_micros']),
  windowStart: z.number().int().nonnegative(),
  weekMicros: z.number().int().nonnegative(),
  topComponent: z.enum(COMPONENTS as [Component, ...Component[]]),
  at: z.number().int().nonnegative(),
});

/** Start of the UTC month holding `ms`, and of the next one. */
export function monthWindow(ms: number): { start: number; end: number } {
  const d = new Date(ms);
  return { start: Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1), end: Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1) };
}

/**
 * The month's cost at this pace (pure, integer): spend so far scaled by the month's length over the part
 * that has passed. Before a full hour has passed the spend so far is the estimate (no wild early pace).
 */
export function estimatedMonthlyMicros(spentMicros: number, now: number): number {
  const { start, end } = monthWindow(now);
  const elapsed = Math.max(0, now - start);
  if (elapsed < 3_600_000) return spentMicros;
  return Number((BigInt(spentMicros) * BigInt(end - start)) / BigInt(elapsed));
}

/** A user's totals for the period, as the spend alerts read them. */
export interface SpendSnapshot {
  tenantId: string;
  userId?: string;
  /** Absent: the route's configured `to`. */
  email?: string | readonly string[];
  /** Executions this month and the tier's limit (null: unlimited). */
  executions: number;
  executionsLimit: number | null;
  /** Spend this month, USD micros, and the monthly budget (null: none). */
  monthMicros: number;
  monthlyBudgetMicros: number | null;
  weekMicros: number;
  topComponent: Component;
  now: number;
}

/**
 * Every threshold the totals have reached this period (pure). Derived from totals, not from transitions,
 * so a replay or a restart yields the same list; the dispatcher sends each (metric, percent, period) once.
 */
export function spendAlertsOf(s: SpendSnapshot, percents: readonly number[] = SPEND_PERCENTS): SpendAlert[] {
  const { start } = monthWindow(s.now);
  const base = { kind: 'user_spend' as const, tenantId: s.tenantId, ...(s.userId !== undefined ? { userId: s.userId } : {}), ...(s.email !== undefined ? { email: s.email } : {}), windowStart: start, weekMicros: s.weekMicros, topComponent: s.topComponent, at: s.now };
  const out: SpendAlert[] = [];
  const add = (metric: SpendMetric, unit: SpendAlert['unit'], value: number, limit: number | null): void => {
    if (limit === null || limit <= 0) return;
    // value >= limit * p / 100  <=>  value * 100 >= limit * p (integers, no float drift)
    for (const p of percents) if (value * 100 >= limit * p) out.push({ ...base, metric, unit, percent: p, value, limit });
  };
  add('executions_month', 'count', s.executions, s.executionsLimit);
  add('monthly_cost', 'usd_micros', estimatedMonthlyMicros(s.monthMicros, s.now), s.monthlyBudgetMicros);
  return out;
}

const METRIC_LABEL: Record<SpendMetric, string> = {
  executions_month: 'executions this month (tier limit)',
  monthly_cost: 'estimated monthly cost (budget)',
  daily_spend: 'platform-key LLM spend today (daily cap)',
};

const METRIC_TITLE: Record<SpendMetric, string> = { executions_month: 'monthly executions', monthly_cost: 'monthly budget', daily_spend: 'daily spend cap' };

/** The period's label: the UTC month, or the UTC day of a daily limit. */
const periodOf = (a: Pick<SpendAlert, 'metric' | 'windowStart'>): string => new Date(a.windowStart).toISOString().slice(0, a.metric === 'daily_spend' ? 10 : 7);

function amount(unit: SpendAlert['unit'], v: number): string {
  return unit === 'usd_micros' ? `$${microsToUsd(v)}` : String(v);
}

/** Once per tenant, user, metric, percent and period (month; day for daily_spend). */
export function spendDedupKey(a: Pick<SpendAlert, 'tenantId' | 'userId' | 'metric' | 'percent' | 'windowStart'>): string {
  return `forge/tenant:${a.tenantId}/spend:${a.metric}:${a.percent}:${a.userId ?? '-'}/${periodOf(a)}`;
}

/** The view of a spend alert: value, threshold, 7-day burn, top component, a link to the burn page. */
export function spendView(a: SpendAlert, config: AlertsConfig): AlertView {
  const scope = `tenant:${a.tenantId}`;
  const condition = `spend_${a.metric}_${a.percent}`;
  // The threshold in the metric's unit, rounded up: what the value had to reach.
  const threshold = Math.ceil((a.limit * a.percent) / 100);
  const links = { dashboard: link(config.links.dashboardUrl, scope), acknowledge: link(config.links.acknowledgeUrl, scope) };
  const what = METRIC_LABEL[a.metric];
  const summary = truncate(
    `${a.percent}% of ${what} reached: ${amount(a.unit, a.value)} (threshold ${amount(a.unit, threshold)} of ${amount(a.unit, a.limit)}); 7-day burn $${microsToUsd(a.weekMicros)}; top component ${componentSpec(a.topComponent).label}`,
    1024,
  );
  return {
    kind: 'user_spend',
    scope,
    condition,
    severity: a.percent >= 100 ? 'error' : 'warning',
    dedupKey: spendDedupKey(a),
    at: a.at,
    title: `Forge: ${a.percent}% of your ${METRIC_TITLE[a.metric]} (${a.tenantId})`,
    summary,
    facts: [
      { label: 'Account', value: a.userId ? `${a.tenantId} / ${a.userId}` : a.tenantId },
      { label: 'Measure', value: what },
      { label: 'Current value', value: amount(a.unit, a.value) },
      { label: 'Threshold', value: `${amount(a.unit, threshold)} (${a.percent}% of ${amount(a.unit, a.limit)})` },
      { label: 'Trailing 7-day burn', value: `$${microsToUsd(a.weekMicros)}` },
      { label: 'Top component', value: componentSpec(a.topComponent).label },
      { label: 'Period', value: periodOf(a) },
    ],
    details: { tenant_id: a.tenantId, user_id: a.userId ?? null, metric: a.metric, percent: a.percent, value: a.value, limit: a.limit, unit: a.unit, week_micros: a.weekMicros, top_component: a.topComponent, window_start: a.windowStart, dashboard_url: links.dashboard },
    links,
  };
}

/**
 * A month trending at `factor` x the average of earlier months (pure, integers): from the middle of the UTC
 * month, the month's estimate at its pace so far against the mean of the previous months that had spend.
 * Undefined before mid-month, without history, or below the factor.
 */
export function monthTrend(input: { monthSoFarMicros: number; previousMonthsMicros: readonly number[]; now: number; factor?: number }):
  | { projectedMicros: number; averageMicros: number; factor: number }
  | undefined {
  const { start } = monthWindow(input.now);
  if (input.now < start + 14 * 86_400_000) return undefined;
  const history = input.previousMonthsMicros.filter((m) => m > 0);
  if (history.length === 0) return undefined;
  const factor = input.factor ?? 2;
  const averageMicros = Math.floor(history.reduce((a, b) => a + b, 0) / history.length);
  const projectedMicros = estimatedMonthlyMicros(input.monthSoFarMicros, input.now);
  return projectedMicros >= factor * averageMicros ? { projectedMicros, averageMicros, factor } : undefined;
}
