import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  burnAlerts,
  checkDailySpend,
  checkExecutionLimit,
  checkModelAllowed,
  checkSandboxTry,
  checkTokens,
  findModel,
  loadPlans,
  parsePlans,
  PlansConfigError,
  routeModel,
  type ExecutionUsage,
  type Plan,
} from '../billing/index.ts';

const catalog = loadPlans('config/plans.yaml');
const { free, pro, team, enterprise } = catalog.plans;
const NOW = Date.UTC(2025, 10, 15, 12, 0, 0); // 2025-11-15T12:00Z
const MONTH = Date.UTC(2025, 10, 1);
const NEXT_MONTH = Date.UTC(2025, 11, 1);

function usage(count: number, extra: Partial<ExecutionUsage> = {}): ExecutionUsage {
  return { count, monthStart: MONTH, lastExecutionAt: NOW - 1000, ...extra };
}

describe('plans configuration', () => {
  it('loads the four plans with prices in micros and BYOK prices', () => {
    expect(free.priceMicros).toBe(0);
    expect(pro.priceMicros).toBe(9_000_000);
    expect(pro.byokPriceMicros).toBe(5_000_000);
    expect(team.priceMicros).toBe(29_000_000);
    expect(team.byokPriceMicros).toBe(19_000_000);
    expect(team.perSeat).toBe(true);
    expect(enterprise.priceMicros).toBeNull();
    expect(free.executionsPerMonth).toBe(100);
    expect(free.channels).toEqual(['webhook']);
    expect(catalog.credits.packs.growth).toEqual({ id: 'growth', priceMicros: 50_000_000, credits: 6000 });
  });

  it('names the bad key in the error', () => {
    const text = readFileSync('config/plans.yaml', 'utf8').replace('executionsPerMonth: 5000', 'executionsPerMonth: -5');
    try {
      parsePlans(text, 'bad.yaml');
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(PlansConfigError);
      const err = e as PlansConfigError;
      expect(err.code).toBe('FORGE_ERR_BILLING_CONFIG');
      expect(err.message).toContain('plans.pro.executionsPerMonth');
      expect(err.field).toBe('plans.pro.executionsPerMonth');
    }
  });

  it('rejects an unknown key and a price given as a float', () => {
    const t1 = readFileSync('config/plans.yaml', 'utf8').replace('    perSeat: false\n    maxRunningAgents: 3', '    perSeat: false\n    maxRunningAgent: 3');
    expect(() => parsePlans(t1)).toThrow(/plans\.free/);
    const t2 = readFileSync('config/plans.yaml', 'utf8').replace('priceUsd: "9"', 'priceUsd: 9.5');
    expect(() => parsePlans(t2)).toThrow(/plans\.pro\.priceUsd/);
  });
});

describe('execution limits at their edges', () => {
  it('Free: the 99th and 100th execution run, the 101st is denied until the next UTC month', () => {
    expect(checkExecutionLimit(free, usage(98), NOW)).toMatchObject({ decision: 'allow', executionNumber: 99 });
    expect(checkExecutionLimit(free, usage(99), NOW)).toMatchObject({ decision: 'allow', executionNumber: 100 });
    const d = checkExecutionLimit(free, usage(100), NOW);
    expect(d).toMatchObject({ decision: 'deny', reason: 'limit_reached', resetsAt: NEXT_MONTH, limit: 100 });
    if (d.decision === 'deny') expect(d.message).toContain('2025-12-01T00:00:00.000Z');
  });

  it('Free has no overage even when asked', () => {
    expect(checkExecutionLimit(free, usage(100, { overageOptIn: true }), NOW).decision).toBe('deny');
  });

  it('month rollover (UTC): last month’s count does not carry over', () => {
    const lastMonth = usage(100, { monthStart: Date.UTC(2025, 9, 1) });
    expect(checkExecutionLimit(free, lastMonth, NOW)).toMatchObject({ decision: 'allow', executionNumber: 1 });
    // one millisecond before midnight UTC on the last day still belongs to the old month
    const lastMs = NEXT_MONTH - 1;
    expect(checkExecutionLimit(free, usage(100), lastMs)).toMatchObject({ decision: 'deny', resetsAt: NEXT_MONTH });
    expect(checkExecutionLimit(free, usage(100), NEXT_MONTH)).toMatchObject({ decision: 'allow', executionNumber: 1 });
  });

  it('Pro: unthrottled through 3,000, then one execution a minute, denied past 5,000', () => {
    expect(checkExecutionLimit(pro, usage(2999), NOW)).toMatchObject({ decision: 'allow', executionNumber: 3000 });
    expect(checkExecutionLimit(pro, usage(3000, { lastExecutionAt: NOW - 1000 }), NOW)).toEqual({
      decision: 'throttle',
      reason: 'throttled',
      retryAfterMs: 59_000,
      executionNumber: 3001,
      throttleAfter: 3000,
    });
    expect(checkExecutionLimit(pro, usage(3000, { lastExecutionAt: NOW - 60_000 }), NOW)).toMatchObject({ decision: 'allow', executionNumber: 3001 });
    expect(checkExecutionLimit(pro, usage(4999, { lastExecutionAt: NOW - 60_000 }), NOW)).toMatchObject({ decision: 'allow', executionNumber: 5000 });
    expect(checkExecutionLimit(pro, usage(5000, { lastExecutionAt: NOW - 3_600_000 }), NOW)).toMatchObject({ decision: 'deny', resetsAt: NEXT_MONTH });
  });

  it('Pro with opt-in overage: neither throttled nor capped; past 5,000 flagged as overage', () => {
    expect(checkExecutionLimit(pro, usage(3000, { overageOptIn: true }), NOW)).toMatchObject({ decision: 'allow', overage: false });
    expect(checkExecutionLimit(pro, usage(4999, { overageOptIn: true }), NOW)).toMatchObject({ decision: 'allow', overage: false });
    expect(checkExecutionLimit(pro, usage(5000, { overageOptIn: true }), NOW)).toMatchObject({ decision: 'allow', overage: true, executionNumber: 5001 });
  });

  it('Team: throttled after 15,000 per seat, capped at 25,000 per seat', () => {
    expect(checkExecutionLimit(team, usage(29_999, { seats: 2 }), NOW)).toMatchObject({ decision: 'allow' });
    expect(checkExecutionLimit(team, usage(30_000, { seats: 2 }), NOW)).toMatchObject({ decision: 'throttle', throttleAfter: 30_000 });
    expect(checkExecutionLimit(team, usage(15_000, { seats: 1 }), NOW)).toMatchObject({ decision: 'throttle' });
    expect(checkExecutionLimit(team, usage(49_999, { seats: 2, lastExecutionAt: null }), NOW)).toMatchObject({ decision: 'allow' });
    expect(checkExecutionLimit(team, usage(50_000, { seats: 2 }), NOW)).toMatchObject({ decision: 'deny', limit: 50_000 });
  });

  it('Enterprise is unlimited', () => {
    expect(checkExecutionLimit(enterprise, usage(10_000_000), NOW)).toMatchObject({ decision: 'allow', included: null });
  });
});

describe('cost guardrails', () => {
  it('per-user daily spend cap: $1 Free, $5 Pro, $20 Team, reset at the next UTC day', () => {
    expect(checkDailySpend(free, 900_000, 100_000, NOW).decision).toBe('allow');
    expect(checkDailySpend(free, 900_000, 100_001, NOW)).toMatchObject({ decision: 'deny', reason: 'daily_spend_cap', limit: 1_000_000, resetsAt: Date.UTC(2025, 10, 16) });
    expect(checkDailySpend(pro, 4_999_999, 1, NOW).decision).toBe('allow');
    expect(checkDailySpend(pro, 5_000_000, 1, NOW).decision).toBe('deny');
    expect(checkDailySpend(team, 19_000_000, 1_000_000, NOW).decision).toBe('allow');
    expect(checkDailySpend(team, 20_000_000, 1, NOW).decision).toBe('deny');
  });

  it('at most 50K tokens per execution', () => {
    expect(checkTokens(pro, 50_000).decision).toBe('allow');
    expect(checkTokens(pro, 50_001)).toMatchObject({ decision: 'deny', reason: 'max_tokens', limit: 50_000 });
  });

  it('no heavy models on Free; unknown models refused', () => {
    const opus = findModel(catalog, 'claude-opus');
    expect(checkModelAllowed(free, opus, 'claude-opus')).toMatchObject({ decision: 'deny', reason: 'model_blocked' });
    expect(checkModelAllowed(pro, opus, 'claude-opus').decision).toBe('allow');
    expect(checkModelAllowed(free, findModel(catalog, 'gpt-4o'), 'gpt-4o').decision).toBe('allow');
    expect(checkModelAllowed(pro, undefined, 'nope')).toMatchObject({ decision: 'deny', reason: 'unknown_model' });
  });

  it('sandbox tries per day', () => {
    expect(checkSandboxTry(free, 4, NOW).decision).toBe('allow');
    expect(checkSandboxTry(free, 5, NOW)).toMatchObject({ decision: 'deny', limit: 5 });
  });

  it('burn alerts fire once per threshold crossed (50/80/100 %), derived from totals', () => {
    const base = { percents: catalog.burnAlertPercents, metric: 'executions_month' as const, tenantId: 't', limit: 100, unit: 'count' as const, windowStart: MONTH, now: NOW };
    expect(burnAlerts({ ...base, before: 48, after: 49 })).toEqual([]);
    expect(burnAlerts({ ...base, before: 49, after: 50 }).map((a) => a.percent)).toEqual([50]);
    expect(burnAlerts({ ...base, before: 50, after: 51 })).toEqual([]);
    expect(burnAlerts({ ...base, before: 79, after: 80 }).map((a) => a.percent)).toEqual([80]);
    expect(burnAlerts({ ...base, before: 99, after: 100 }).map((a) => a.percent)).toEqual([100]);
    // one big jump crosses several
    const jump = burnAlerts({ ...base, before: 10, after: 120 });
    expect(jump.map((a) => a.percent)).toEqual([50, 80, 100]);
    expect(new Set(jump.map((a) => a.dedupKey)).size).toBe(3);
    expect(burnAlerts({ ...base, limit: null, before: 0, after: 1000 })).toEqual([]);
    // spend in micros: 50 % of $1 is 500,000 micros
    const spend = burnAlerts({ ...base, metric: 'daily_spend', unit: 'usd_micros', userId: 'u', limit: 1_000_000, before: 499_999, after: 500_000 });
    expect(spend).toMatchObject([{ percent: 50, userId: 'u', metric: 'daily_spend' }]);
  });
});

describe('model routing', () => {
  it('cheapest model of the skill tier above the threshold; best quality when preferred', () => {
    // code: standard tier, threshold 0.75; gpt-4o 0.80 cheaper, claude-sonnet 0.88
    expect(routeModel(catalog, 'code')).toMatchObject({ ok: true, model: { id: 'gpt-4o' }, tier: 'standard' });
    expect(routeModel(catalog, 'code', { preference: 'best_quality' })).toMatchObject({ ok: true, model: { id: 'claude-sonnet' } });
    // classify: fast, threshold 0.8; both fast models qualify, gpt-4o-mini cheaper
    expect(routeModel(catalog, 'classify')).toMatchObject({ ok: true, model: { id: 'gpt-4o-mini' } });
    // plan: heavy, threshold 0.9; o1 scores 0.93, claude-opus 0.95
    expect(routeModel(catalog, 'plan')).toMatchObject({ ok: true, model: { id: 'o1' } });
  });

  it('a model at exactly the threshold does not qualify ("above")', () => {
    const c = structuredClone(catalog);
    c.skills.code = { tier: 'standard', minQuality: 0.8 };
    expect(routeModel(c, 'code')).toMatchObject({ ok: true, model: { id: 'claude-sonnet' } });
    c.skills.code = { tier: 'standard', minQuality: 0.88 };
    expect(routeModel(c, 'code')).toMatchObject({ ok: false, reason: 'no_model_meets_threshold' });
  });

  it('respects the plan: heavy skills are refused on Free; unknown skill', () => {
    expect(routeModel(catalog, 'plan', { plan: free as Plan })).toMatchObject({ ok: false, reason: 'tier_blocked' });
    expect(routeModel(catalog, 'dance')).toMatchObject({ ok: false, reason: 'unknown_skill' });
  });
});
