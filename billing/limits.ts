import { DAY_MS, dayOf, type Micros } from '../rules/index.ts';
import type { ModelInfo, Plan } from './plans.ts';

/** Start of the UTC calendar month of `t` (epoch ms). */
export function monthStartUtc(t: number): number {
  const d = new Date(t);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
}

/** Start of the next UTC calendar month after the one holding `t` (epoch ms). */
export function nextMonthStartUtc(t: number): number {
  const d = new Date(t);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
}

/** Start of the UTC day holding `t` (epoch ms). */
export function dayStartUtc(t: number): number {
  return dayOf(t) * DAY_MS;
}

export function nextDayStartUtc(t: number): number {
  return (dayOf(t) + 1) * DAY_MS;
}

/** "2025-11" for the UTC month of `t`. */
export function monthKey(t: number): string {
  return new Date(monthStartUtc(t)).toISOString().slice(0, 7);
}

/** Executions of one team (tenant) in one UTC month, as metered from the event log. */
export interface ExecutionUsage {
  /** Executions already counted (finalized or admitted) in the month starting at monthStart. */
  count: number;
  /** Start of the UTC month the count belongs to (epoch ms). A count of an earlier month reads as 0. */
  monthStart: number;
  /** Epoch ms of the latest execution in that month; drives the throttle. */
  lastExecutionAt: number | null;
  /** Seats of a per-seat plan (Team); ignored otherwise. Default 1. */
  seats?: number;
  /** The team opted in to pay overage instead of being throttled or capped. */
  overageOptIn?: boolean;
}

export type LimitDecision =
  | {
      decision: 'allow';
      /** 1-based number of the execution being admitted in the month. */
      executionNumber: number;
      /** True when the execution is past the included ones and billed as overage. */
      overage: boolean;
      /** Included executions this month for the team; null = unlimited. */
      included: number | null;
    }
  | { decision: 'throttle'; reason: 'throttled'; retryAfterMs: number; executionNumber: number; throttleAfter: number }
  | { decision: 'deny'; reason: 'limit_reached'; resetsAt: number; limit: number; message: string };

/**
 * Decides whether one more execution may start now (pure: no clock, no I/O).
 * - Past `executionsPerMonth` (x seats): deny with the start of the next UTC month, unless overage is opted in.
 * - Past `throttleAfter` (x seats): one execution per `throttleIntervalMs`, unless overage is opted in.
 * Overage (when the plan offers it and the team opted in) replaces both: the execution is allowed and flagged.
 * The Nth execution of the month is judged with count = N - 1.
 */
export function checkExecutionLimit(plan: Plan, usage: ExecutionUsage, now: number): LimitDecision {
  const month = monthStartUtc(now);
  const sameMonth = usage.monthStart === month;
  const count = sameMonth ? Math.max(0, usage.count) : 0;
  const last = sameMonth ? usage.lastExecutionAt : null;
  const seats = plan.perSeat ? Math.max(1, usage.seats ?? 1) : 1;
  const included = plan.executionsPerMonth === null ? null : plan.executionsPerMonth * seats;
  const throttleAfter = plan.throttleAfter === null ? null : plan.throttleAfter * seats;
  const executionNumber = count + 1;
  const overageOn = plan.overageAvailable && usage.overageOptIn === true;

  if (overageOn) {
    return { decision: 'allow', executionNumber, overage: included !== null && count >= included, included };
  }
  if (included !== null && count >= included) {
    const resetsAt = nextMonthStartUtc(now);
    return {
      decision: 'deny',
      reason: 'limit_reached',
      resetsAt,
      limit: included,
      message: `${plan.name} limit of ${included} executions this month reached; resets at ${new Date(resetsAt).toISOString()}`,
    };
  }
  if (throttleAfter !== null && count >= throttleAfter && last !== null) {
    const wait = last + plan.throttleIntervalMs - now;
    if (wait > 0) return { decision: 'throttle', reason: 'throttled', retryAfterMs: wait, executionNumber, throttleAfter };
  }
  return { decision: 'allow', executionNumber, overage: false, included };
}

export type SimpleDecision =
  | { decision: 'allow' }
  | { decision: 'deny'; reason: string; limit: number; resetsAt?: number; message: string };

/** Sandbox tries per user per UTC day; `triesToday` counts tries already made. */
export function checkSandboxTry(plan: Plan, triesToday: number, now: number): SimpleDecision {
  if (plan.sandboxTriesPerDay === null || triesToday < plan.sandboxTriesPerDay) return { decision: 'allow' };
  const resetsAt = nextDayStartUtc(now);
  return {
    decision: 'deny',
    reason: 'sandbox_tries_reached',
    limit: plan.sandboxTriesPerDay,
    resetsAt,
    message: `${plan.name} allows ${plan.sandboxTriesPerDay} sandbox tries a day; resets at ${new Date(resetsAt).toISOString()}`,
  };
}

/** Concurrent running agents per team. */
export function checkRunningAgents(plan: Plan, running: number): SimpleDecision {
  if (plan.maxRunningAgents === null || running < plan.maxRunningAgents) return { decision: 'allow' };
  return {
    decision: 'deny',
    reason: 'agents_limit',
    limit: plan.maxRunningAgents,
    message: `${plan.name} allows ${plan.maxRunningAgents} running agents`,
  };
}

// ---- cost guardrails -----------------------------------------------------------------------------

/**
 * Per-user daily spend cap on platform-key LLM spend (BYOK spend is the user's own and is not counted).
 * Denies when spent + estimate would pass the cap, so the cap is never exceeded by an admitted estimate.
 */
export function checkDailySpend(plan: Plan, spentTodayMicros: Micros, estimateMicros: Micros, now: number): SimpleDecision {
  const cap = plan.dailySpendCapMicros;
  if (cap === null || spentTodayMicros + Math.max(0, estimateMicros) <= cap) return { decision: 'allow' };
  const resetsAt = nextDayStartUtc(now);
  return {
    decision: 'deny',
    reason: 'daily_spend_cap',
    limit: cap,
    resetsAt,
    message: `${plan.name} caps a user's spend at ${cap / 1e6} USD a day; resets at ${new Date(resetsAt).toISOString()}`,
  };
}

/** At most `maxTokensPerExecution` tokens (input + output) per execution. */
export function checkTokens(plan: Plan, requestedTokens: number): SimpleDecision {
  if (requestedTokens <= plan.maxTokensPerExecution) return { decision: 'allow' };
  return {
    decision: 'deny',
    reason: 'max_tokens',
    limit: plan.maxTokensPerExecution,
    message: `${plan.name} allows at most ${plan.maxTokensPerExecution} tokens per execution, asked ${requestedTokens}`,
  };
}

/** Model blocklist per tier (e.g. no heavy models on Free). Unknown models are refused. */
export function checkModelAllowed(plan: Plan, model: ModelInfo | undefined, modelId: string): SimpleDecision {
  if (model === undefined) {
    return { decision: 'deny', reason: 'unknown_model', limit: 0, message: `model "${modelId}" is not in the catalog` };
  }
  if (plan.blockedModels.includes(model.id) || plan.blockedModelTiers.includes(model.tier)) {
    return {
      decision: 'deny',
      reason: 'model_blocked',
      limit: 0,
      message: `${plan.name} does not include ${model.tier} model "${model.id}"`,
    };
  }
  return { decision: 'allow' };
}

export type BurnMetric = 'executions_month' | 'daily_spend';

/** A burn alert event; the alerts part delivers it. */
export interface BurnAlert {
  kind: 'billing.burn';
  metric: BurnMetric;
  tenantId: string;
  /** Set for per-user limits (daily spend). */
  userId?: string;
  /** The threshold crossed, percent of the limit (50, 80, 100). */
  percent: number;
  value: number;
  limit: number;
  /** Units of value and limit. */
  unit: 'count' | 'usd_micros';
  /** Start of the window the limit applies to (month or day, epoch ms): dedup key with metric and percent. */
  windowStart: number;
  at: number;
  /** Stable id for deduplication downstream. */
  dedupKey: string;
}

/**
 * Burn alerts crossed by moving from `before` to `after` (pure). Derived from totals, so a replay or a
 * restart yields the same alerts for the same totals; each (window, percent) is crossed once.
 * A threshold is crossed when before < percent% of limit <= after.
 */
export function burnAlerts(input: {
  percents: readonly number[];
  metric: BurnMetric;
  tenantId: string;
  userId?: string;
  before: number;
  after: number;
  limit: number | null;
  unit: 'count' | 'usd_micros';
  windowStart: number;
  now: number;
}): BurnAlert[] {
  const { limit } = input;
  if (limit === null || limit <= 0 || input.after <= input.before) return [];
  const out: BurnAlert[] = [];
  for (const p of input.percents) {
    // value >= limit * p / 100  <=>  value * 100 >= limit * p (integers, no float drift)
    const reached = (v: number): boolean => v * 100 >= limit * p;
    if (!reached(input.before) && reached(input.after)) {
      out.push({
        kind: 'billing.burn',
        metric: input.metric,
        tenantId: input.tenantId,
        ...(input.userId !== undefined ? { userId: input.userId } : {}),
        percent: p,
        value: input.after,
        limit,
        unit: input.unit,
        windowStart: input.windowStart,
        at: input.now,
        dedupKey: `billing.burn:${input.metric}:${input.tenantId}:${input.userId ?? '-'}:${input.windowStart}:${p}`,
      });
    }
  }
  return out;
}
