import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  buildInvoice,
  checkExecutionLimit,
  fallbackChain,
  commitmentCharge,
  commitmentTier,
  invoiceCsv,
  invoiceHtml,
  loadPlans,
  overageCharge,
  parseUsagePricing,
  paygCharge,
  paygUpgradeAdvice,
  payoutDecision,
  priceAt,
  revenueSplit,
  tokenAmounts,
  type BillableEvent,
} from '../billing/index.ts';

const catalog = loadPlans('config/plans.yaml');
const SHIPPED = readFileSync('config/usage-pricing.yaml', 'utf8');
const pricing = parseUsagePricing(SHIPPED);
const { pro, team, free, payg } = catalog.plans;
const M = 1_000_000;

describe('overage (F-039)', () => {
  it('Pro: the 5,000th execution is included, the 5,001st costs 0.005 USD; nothing without opting in', () => {
    expect(overageCharge(pro, 5000, 1, true)).toEqual({ executions: 0, unitMicros: 5000, micros: 0 });
    expect(overageCharge(pro, 5001, 1, true)).toEqual({ executions: 1, unitMicros: 5000, micros: 5000 });
    expect(overageCharge(pro, 5001, 1, false).micros).toBe(0);
  });
  it('Team: 0.003 USD past 25,000 per seat', () => {
    expect(overageCharge(team, 75_000, 3, true).micros).toBe(0);
    expect(overageCharge(team, 75_001, 3, true)).toEqual({ executions: 1, unitMicros: 3000, micros: 3000 });
  });
  it('Free has no overage: it must upgrade', () => {
    expect(free.overageAvailable).toBe(false);
    expect(overageCharge(free, 101, 1, true).micros).toBe(0);
  });
});

describe('Pay As You Go', () => {
  it('0.01 USD an execution, 0 floor, 50 USD cap', () => {
    expect(payg.priceMicros).toBe(0);
    expect(paygCharge(pricing.payAsYouGo, 0)).toEqual({ micros: 0, capped: false });
    expect(paygCharge(pricing.payAsYouGo, 4999)).toEqual({ micros: 49_990_000, capped: false });
    expect(paygCharge(pricing.payAsYouGo, 5000)).toEqual({ micros: 50 * M, capped: false });
    expect(paygCharge(pricing.payAsYouGo, 5001)).toEqual({ micros: 50 * M, capped: true });
  });
  it('says so when the month would have cost less on Pro (9 USD): 900 executions do not, 901 do', () => {
    expect(paygUpgradeAdvice(pricing, pro, 900)).toEqual({ paygMicros: 9 * M, proMicros: 9 * M, upgrade: false });
    expect(paygUpgradeAdvice(pricing, pro, 901)).toMatchObject({ paygMicros: 9_010_000, upgrade: true });
  });
});

describe('committed use (F-043)', () => {
  it.each([
    [99_999, undefined],
    [100_000, 20],
    [499_999, 20],
    [500_000, 35],
    [999_999, 35],
    [1_000_000, 45],
    [5_000_000, 45],
  ])('%i executions a month -> %s %% off', (n, pct) => {
    expect(commitmentTier(pricing.commitments.tiers, n)?.discountPercent).toBe(pct);
  });
  it('bills the commitment in a month under it, and executions past it at the standard rate', () => {
    expect(commitmentCharge(pricing.commitments, 100_000, 50_000)).toMatchObject({ committedMicros: 800 * M, overExecutions: 0, overMicros: 0, discountMicros: 200 * M });
    expect(commitmentCharge(pricing.commitments, 100_000, 100_001)).toMatchObject({ committedMicros: 800 * M, overExecutions: 1, overMicros: 10_000 });
    expect(commitmentCharge(pricing.commitments, 500_000, 500_000).committedMicros).toBe(3250 * M);
    expect(commitmentCharge(pricing.commitments, 1_000_000, 0).committedMicros).toBe(5500 * M);
    expect(() => commitmentCharge(pricing.commitments, 99_999, 0)).toThrow(/100000/);
    expect(pricing.commitments.minTermMonths).toBe(12);
  });
});

describe('the token price book', () => {
  it.each([
    ['claude-haiku', 0.25, 1.25, 0.5, 2.5],
    ['claude-sonnet', 3, 15, 6, 30],
    ['gpt-4o-mini', 0.15, 0.6, 0.3, 1.2],
    ['gpt-4o', 2.5, 10, 5, 20],
    ['groq-llama', 0.05, 0.08, 0.1, 0.16],
    ['deepseek-r1', 0, 0, 0.05, 0.1],
    ['ollama-local', 0, 0, 0.02, 0.05],
  ])('%s: cost %s/%s, price %s/%s USD per 1M tokens', (model, ci, co, pi, po) => {
    const e = priceAt(pricing.priceBook, model, Date.UTC(2026, 5, 1))!;
    expect(tokenAmounts(e, M, 0)).toEqual({ costMicros: ci * M, priceMicros: pi * M });
    expect(tokenAmounts(e, 0, M)).toEqual({ costMicros: co * M, priceMicros: po * M });
  });
  it('rounds each event once, half-even: 1 Haiku input token is 0.5 micro -> 0; 3 are 1.5 -> 2', () => {
    const e = priceAt(pricing.priceBook, 'claude-haiku', Date.UTC(2026, 5, 1))!;
    expect(tokenAmounts(e, 1, 0).priceMicros).toBe(0);
    expect(tokenAmounts(e, 3, 0).priceMicros).toBe(2);
  });
  it('a price change at midnight applies from midnight on and never reprices the day before', () => {
    const yaml = SHIPPED.replace('priceBook:\n', 'priceBook:\n  - { model: gpt-4o, provider: openai, effectiveFrom: "2026-03-01T00:00:00Z", cost: { input: "2", output: "8" }, price: { input: "4", output: "16" } }\n');
    const p = parseUsagePricing(yaml);
    const before = Date.parse('2026-02-28T23:59:59.999Z');
    const midnight = Date.parse('2026-03-01T00:00:00.000Z');
    expect(tokenAmounts(priceAt(p.priceBook, 'gpt-4o', before)!, M, 0).priceMicros).toBe(5 * M);
    expect(tokenAmounts(priceAt(p.priceBook, 'gpt-4o', midnight)!, M, 0).priceMicros).toBe(4 * M);
    expect(priceAt(p.priceBook, 'gpt-4o', Date.parse('2025-12-31T23:59:59.999Z'))).toBeUndefined();
  });
  it('refuses a creator price outside 0.01..0.50 USD, naming the key', () => {
    for (const bad of ['0.009', '0.51']) {
      expect(() => parseUsagePricing(SHIPPED.replace('pricePerExecutionUsd: "0.05"', `pricePerExecutionUsd: "${bad}"`))).toThrow(/premiumSkills\.summarize\.pricePerExecutionUsd/);
    }
    for (const ok of ['0.01', '0.50']) expect(() => parseUsagePricing(SHIPPED.replace('pricePerExecutionUsd: "0.05"', `pricePerExecutionUsd: "${ok}"`))).not.toThrow();
  });
});

describe('creator revenue share (F-042) and payouts', () => {
  it('splits 70/30 by default; the platform keeps exactly the rest', () => {
    expect(pricing.premiumSkills.code).toMatchObject({ mode: 'share', creatorPercent: 30 });
    expect(revenueSplit(1_000_001, 30)).toEqual({ creatorMicros: 300_000, platformMicros: 700_001 });
    expect(revenueSplit(5, 30)).toEqual({ creatorMicros: 2, platformMicros: 3 }); // 1.5 -> 2 (half-even)
  });
  it('pays 25 USD and more; a 24.99 USD balance carries over and is paid with the next month', () => {
    expect(payoutDecision(0, 24_990_000, pricing.payoutMinimumMicros)).toEqual({ balanceMicros: 24_990_000, payMicros: 0, carryMicros: 24_990_000 });
    expect(payoutDecision(24_990_000, 10_000, pricing.payoutMinimumMicros)).toEqual({ balanceMicros: 25 * M, payMicros: 25 * M, carryMicros: 0 });
  });
});

describe('the invoice (pure)', () => {
  const at = Date.UTC(2026, 2, 10, 12);
  const ev = (i: number, over: Partial<BillableEvent>): BillableEvent => ({ eventId: `e${i}`, at: at + i * 3_600_000 * 7, userId: 'u', agentId: 'a1', skillId: '', keySource: 'platform', llm: [], ...over });
  it('prices a failed-over task at the model that answered, tracks BYOK at 0, and every figure adds up', () => {
    const events = [
      ev(1, { llm: [{ model: 'claude-sonnet', inputTokens: 0, outputTokens: 0 }, { model: 'claude-haiku', inputTokens: 1000, outputTokens: 500 }] }),
      ev(2, { agentId: 'a2', llm: [{ model: 'gpt-4o', inputTokens: 3, outputTokens: 0 }] }),
      ev(3, { keySource: 'byok', llm: [{ model: 'gpt-4o', inputTokens: M, outputTokens: 0 }] }),
      ev(4, { llm: [{ model: 'unknown-model', inputTokens: 10, outputTokens: 1 }] }),
    ];
    const inv = buildInvoice({ tenantId: 't', month: '2026-03', from: Date.UTC(2026, 2, 1), to: Date.UTC(2026, 3, 1), plan: pro, pro, pricing, events, prepaidMicros: 0, account: { seats: 1, byok: false, overageOptIn: true } });
    const line = (id: string) => inv.lines.find((l) => l.id === id);
    expect(line('tokens:claude-haiku')?.amountMicros).toBe(500 + 1250); // 1000 x 0.5 + 500 x 2.5 per 1M
    expect(line('tokens:claude-sonnet')?.amountMicros).toBe(0);
    expect(line('tokens:gpt-4o')?.amountMicros).toBe(15); // 3 x 5 per 1M
    expect(line('byok-tokens:gpt-4o')).toMatchObject({ amountMicros: 0, inputTokens: M });
    expect(inv.unpriced).toEqual([{ model: 'unknown-model', inputTokens: 10, outputTokens: 1 }]);
    expect(inv.totalMicros).toBe(9 * M + 1750 + 15);
    expect(inv.byAgent.map((d) => [d.key, d.executions, d.priceMicros])).toEqual([['a1', 3, 1750], ['a2', 1, 15]]);
    expect(invoiceCsv(inv)).toContain('total,,,,,9.001765');
    expect(invoiceHtml(inv)).toContain('<th>9.001765</th>');
  });
});

describe('the routing fallback chain', () => {
  const now = Date.UTC(2026, 5, 1);
  const chain = (skill: string, planId: 'free' | 'pro') => fallbackChain(catalog, pricing, skill, { plan: catalog.plans[planId], now }).map((x) => `${x.class}:${x.model}`);
  it('local Ollama, free OpenRouter, Groq, then paid: the routed model first, then those above the skill\'s threshold by price', () => {
    // code (standard, quality > 0.75): gpt-4o is routed (cheapest above it); Sonnet qualifies; Haiku and 4o-mini do not.
    expect(chain('code', 'pro')).toEqual(['local:ollama-local', 'free:deepseek-r1', 'groq:groq-llama', 'paid:gpt-4o', 'paid:claude-sonnet']);
    // classify (fast, > 0.8): only fast paid models, never a standard one.
    expect(chain('classify', 'pro')).toEqual(['local:ollama-local', 'free:deepseek-r1', 'groq:groq-llama', 'paid:gpt-4o-mini', 'paid:claude-haiku']);
  });
  it('is per tier: Free never fails over to a tier it blocks', () => {
    expect(chain('plan', 'free')).toEqual(['local:ollama-local', 'free:deepseek-r1', 'groq:groq-llama']);
  });
  it('prices every step with the price book in force', () => {
    const steps = fallbackChain(catalog, pricing, 'code', { plan: pro, now });
    expect(steps[0]).toMatchObject({ model: 'ollama-local', priceInputMicros: 20_000, priceOutputMicros: 50_000 });
    expect(steps.at(-1)).toMatchObject({ model: 'claude-sonnet', priceInputMicros: 6 * M, priceOutputMicros: 30 * M });
  });
});

describe('the run-based plan catalog (the monetization document)', () => {
  const runs = loadPlans('config/plans-run-based.yaml');
  it('Free 10 runs a month, a 5 USD pack of 25 runs, Pro 20 USD with 150 runs, Enterprise custom', () => {
    expect([runs.plans.free.priceMicros, runs.plans.free.executionsPerMonth, runs.plans.free.freeMonthlyRuns]).toEqual([0, 10, 10]);
    expect(runs.credits.packs.runs25).toEqual({ id: 'runs25', priceMicros: 5 * M, credits: 25 });
    expect(runs.credits.perModelTier).toEqual({ fast: 1, standard: 1, heavy: 1 });
    expect([runs.plans.pro.priceMicros, runs.plans.pro.executionsPerMonth, runs.plans.pro.freeMonthlyRuns]).toEqual([20 * M, 150, 150]);
    expect(runs.plans.enterprise.priceMicros).toBeNull();
  });
  it('the same limits apply: the 10th Free run and the 150th Pro run pass, the next ones wait for the month', () => {
    const monthStart = Date.UTC(2026, 2, 1);
    const at = (plan: 'free' | 'pro', count: number) => checkExecutionLimit(runs.plans[plan], { count, monthStart, lastExecutionAt: null, seats: 1, overageOptIn: false }, monthStart + 1000);
    expect(at('free', 9)).toMatchObject({ decision: 'allow', executionNumber: 10 });
    expect(at('free', 10)).toMatchObject({ decision: 'deny', reason: 'limit_reached', limit: 10 });
    expect(at('pro', 149)).toMatchObject({ decision: 'allow', executionNumber: 150 });
    expect(at('pro', 150)).toMatchObject({ decision: 'deny', limit: 150 });
  });
});
