import { z } from 'zod';
import { usdToMicros, type Micros } from '../rules/index.ts';
import { BillingError } from './errors.ts';
import { parseConfigYaml, readConfigFile, type Plan } from './plans.ts';

/**
 * Usage-based pricing as pure functions over config/usage-pricing.yaml: the token price book (cost and user
 * price, effective-dated), overage, Pay As You Go, committed-use discounts, premium-skill revenue share and
 * creator payouts. Money is integer USD micros; token prices are rounded half-even once per event, so every
 * sum over events (per model, per agent, per day) is an exact integer sum.
 */

const usd = z.string().regex(/^\d+(\.\d{1,6})?$/, 'a decimal USD amount as a string, e.g. "9" or "0.002"');
const perMTok = z.strictObject({ input: usd, output: usd });

const fileSchema = z
  .strictObject({
    priceBook: z
      .array(z.strictObject({ model: z.string().min(1).max(128), provider: z.string().min(1), effectiveFrom: z.iso.datetime(), cost: perMTok, price: perMTok }))
      .min(1),
    payAsYouGo: z.strictObject({ perExecutionUsd: usd, floorUsd: usd, monthlyCapUsd: usd }),
    commitments: z.strictObject({
      standardExecutionUsd: usd,
      minTermMonths: z.number().int().min(1).max(120),
      tiers: z.array(z.strictObject({ minExecutions: z.number().int().positive(), discountPercent: z.number().int().min(0).max(100) })).min(1),
    }),
    prepaid: z.strictObject({ offers: z.record(z.string().regex(/^[a-z][a-z0-9_-]{0,31}$/), z.strictObject({ payUsd: usd, creditUsd: usd })) }),
    creators: z.strictObject({ defaultCreatorPercent: z.number().int().min(0).max(100), fixedPriceMinUsd: usd, fixedPriceMaxUsd: usd, payoutMinimumUsd: usd }),
    premiumSkills: z.record(
      z.string().min(1).max(128),
      z.strictObject({
        creator: z.string().regex(/^acct_[A-Za-z0-9]{1,64}$/, 'a Stripe Connect account id (acct_...)'),
        mode: z.enum(['share', 'fixed']),
        creatorPercent: z.number().int().min(0).max(100).optional(),
        pricePerExecutionUsd: usd.optional(),
      }),
    ),
  })
  .superRefine((f, ctx) => {
    const seen = new Set<string>();
    f.priceBook.forEach((e, i) => {
      const k = `${e.model}@${Date.parse(e.effectiveFrom)}`;
      if (seen.has(k)) ctx.addIssue({ code: 'custom', path: ['priceBook', i, 'effectiveFrom'], message: `a second entry for ${e.model} from the same time` });
      seen.add(k);
    });
    const min = usdToMicros(f.creators.fixedPriceMinUsd);
    const max = usdToMicros(f.creators.fixedPriceMaxUsd);
    for (const [skill, s] of Object.entries(f.premiumSkills)) {
      if (s.mode === 'fixed') {
        const p = s.pricePerExecutionUsd === undefined ? null : usdToMicros(s.pricePerExecutionUsd);
        if (p === null || p < min || p > max) ctx.addIssue({ code: 'custom', path: ['premiumSkills', skill, 'pricePerExecutionUsd'], message: `required for mode fixed, ${f.creators.fixedPriceMinUsd} to ${f.creators.fixedPriceMaxUsd} USD` });
        if (s.creatorPercent !== undefined) ctx.addIssue({ code: 'custom', path: ['premiumSkills', skill, 'creatorPercent'], message: 'only with mode share' });
      } else if (s.pricePerExecutionUsd !== undefined) {
        ctx.addIssue({ code: 'custom', path: ['premiumSkills', skill, 'pricePerExecutionUsd'], message: 'only with mode fixed' });
      }
    }
  });

/** One price book entry: per 1M tokens, USD micros, from `effectiveFrom` (epoch ms) on. */
export interface PriceBookEntry {
  model: string;
  provider: string;
  effectiveFrom: number;
  cost: { input: Micros; output: Micros };
  price: { input: Micros; output: Micros };
}

export type PremiumSkill = { skill: string; creator: string } & ({ mode: 'share'; creatorPercent: number } | { mode: 'fixed'; pricePerExecutionMicros: Micros });

export interface CommitmentTier {
  minExecutions: number;
  discountPercent: number;
}

export interface UsagePricing {
  /** Sorted by model, then effectiveFrom. */
  priceBook: PriceBookEntry[];
  payAsYouGo: { perExecutionMicros: Micros; floorMicros: Micros; monthlyCapMicros: Micros };
  commitments: { standardExecutionMicros: Micros; minTermMonths: number; tiers: CommitmentTier[] };
  prepaidOffers: Record<string, { id: string; payMicros: Micros; creditMicros: Micros }>;
  premiumSkills: Record<string, PremiumSkill>;
  payoutMinimumMicros: Micros;
}

export function parseUsagePricing(yamlText: string, source = 'usage-pricing.yaml'): UsagePricing {
  const f = parseConfigYaml(fileSchema, yamlText, source);
  const m = usdToMicros;
  const premiumSkills: Record<string, PremiumSkill> = {};
  for (const [skill, s] of Object.entries(f.premiumSkills)) {
    premiumSkills[skill] =
      s.mode === 'share'
        ? { skill, creator: s.creator, mode: 'share', creatorPercent: s.creatorPercent ?? f.creators.defaultCreatorPercent }
        : { skill, creator: s.creator, mode: 'fixed', pricePerExecutionMicros: m(s.pricePerExecutionUsd as string) };
  }
  return {
    priceBook: f.priceBook
      .map((e) => ({ model: e.model, provider: e.provider, effectiveFrom: Date.parse(e.effectiveFrom), cost: { input: m(e.cost.input), output: m(e.cost.output) }, price: { input: m(e.price.input), output: m(e.price.output) } }))
      .sort((a, b) => (a.model === b.model ? a.effectiveFrom - b.effectiveFrom : a.model < b.model ? -1 : 1)),
    payAsYouGo: { perExecutionMicros: m(f.payAsYouGo.perExecutionUsd), floorMicros: m(f.payAsYouGo.floorUsd), monthlyCapMicros: m(f.payAsYouGo.monthlyCapUsd) },
    commitments: { standardExecutionMicros: m(f.commitments.standardExecutionUsd), minTermMonths: f.commitments.minTermMonths, tiers: [...f.commitments.tiers].sort((a, b) => a.minExecutions - b.minExecutions) },
    prepaidOffers: Object.fromEntries(Object.entries(f.prepaid.offers).map(([id, o]) => [id, { id, payMicros: m(o.payUsd), creditMicros: m(o.creditUsd) }])),
    premiumSkills,
    payoutMinimumMicros: m(f.creators.payoutMinimumUsd),
  };
}

export function loadUsagePricing(path: string): UsagePricing {
  return parseUsagePricing(readConfigFile(path), path);
}

// ------------------------------------------------------------------ tokens

/** The entry in force for a model at `at` (epoch ms): the latest whose effectiveFrom <= at; undefined if none. */
export function priceAt(book: readonly PriceBookEntry[], model: string, at: number): PriceBookEntry | undefined {
  let found: PriceBookEntry | undefined;
  for (const e of book) if (e.model === model && e.effectiveFrom <= at && (!found || e.effectiveFrom > found.effectiveFrom)) found = e;
  return found;
}

/** n / d rounded half-even (n >= 0, d > 0), in exact integer arithmetic. */
function divHalfEven(n: bigint, d: bigint): Micros {
  const q = n / d;
  const r = n % d;
  return Number(r * 2n > d || (r * 2n === d && q % 2n === 1n) ? q + 1n : q);
}

/** (a*x + b*y) / 1e6 rounded half-even. */
function perMillion(tokensA: number, rateA: Micros, tokensB: number, rateB: Micros): Micros {
  return divHalfEven(BigInt(tokensA) * BigInt(rateA) + BigInt(tokensB) * BigInt(rateB), 1_000_000n);
}

/** Our cost and the user's price of one model's tokens in one event, USD micros (rounded once, half-even). */
export function tokenAmounts(e: PriceBookEntry, inputTokens: number, outputTokens: number): { costMicros: Micros; priceMicros: Micros } {
  return { costMicros: perMillion(inputTokens, e.cost.input, outputTokens, e.cost.output), priceMicros: perMillion(inputTokens, e.price.input, outputTokens, e.price.output) };
}

// ------------------------------------------------------------------ executions

/** Executions a plan includes for an account (per seat when the plan is); null = unlimited. */
export function includedExecutions(plan: Plan, seats: number): number | null {
  return plan.executionsPerMonth === null ? null : plan.executionsPerMonth * (plan.perSeat ? Math.max(1, seats) : 1);
}

/** Overage: executions past the included ones at the plan's overage price, only for a team that opted in. */
export function overageCharge(plan: Plan, executions: number, seats: number, optIn: boolean): { executions: number; unitMicros: Micros; micros: Micros } {
  const included = includedExecutions(plan, seats);
  if (!optIn || !plan.overageAvailable || plan.overagePriceMicros === null || included === null) return { executions: 0, unitMicros: plan.overagePriceMicros ?? 0, micros: 0 };
  const over = Math.max(0, executions - included);
  return { executions: over, unitMicros: plan.overagePriceMicros, micros: over * plan.overagePriceMicros };
}

/** Pay As You Go: executions x the rate, never under the floor nor over the monthly cap. */
export function paygCharge(p: UsagePricing['payAsYouGo'], executions: number): { micros: Micros; capped: boolean } {
  const raw = executions * p.perExecutionMicros;
  if (raw >= p.monthlyCapMicros) return { micros: p.monthlyCapMicros, capped: raw > p.monthlyCapMicros };
  return { micros: Math.max(p.floorMicros, raw), capped: false };
}

/** What a month's executions would have cost on Pro: its fee plus overage past the included ones (opted in). */
export function proEquivalentMicros(pro: Plan, executions: number): Micros {
  return (pro.priceMicros ?? 0) + overageCharge(pro, executions, 1, true).micros;
}

/** Should a Pay As You Go month have been a Pro month? (strictly more expensive than Pro). */
export function paygUpgradeAdvice(pricing: UsagePricing, pro: Plan, executions: number): { paygMicros: Micros; proMicros: Micros; upgrade: boolean } {
  const paygMicros = paygCharge(pricing.payAsYouGo, executions).micros;
  const proMicros = proEquivalentMicros(pro, executions);
  return { paygMicros, proMicros, upgrade: paygMicros > proMicros };
}

/** The commitment tier for a committed monthly volume; undefined below the lowest tier. */
export function commitmentTier(tiers: readonly CommitmentTier[], committedExecutions: number): CommitmentTier | undefined {
  let t: CommitmentTier | undefined;
  for (const x of tiers) if (committedExecutions >= x.minExecutions) t = x;
  return t;
}

/**
 * A month under a commitment: the committed volume at the standard rate less the tier's discount (billed even
 * when fewer ran), and executions past it at the standard rate.
 */
export function commitmentCharge(
  c: UsagePricing['commitments'],
  committedExecutions: number,
  executions: number,
): { tier: CommitmentTier; committedMicros: Micros; overExecutions: number; overMicros: Micros; discountMicros: Micros } {
  const tier = commitmentTier(c.tiers, committedExecutions);
  if (!tier) throw new BillingError('FORGE_ERR_BILLING_INPUT', `a commitment starts at ${c.tiers[0]?.minExecutions ?? 0} executions a month`, { field: 'executionsPerMonth' });
  const list = BigInt(committedExecutions) * BigInt(c.standardExecutionMicros);
  const committedMicros = divHalfEven(list * BigInt(100 - tier.discountPercent), 100n);
  const overExecutions = Math.max(0, executions - committedExecutions);
  return { tier, committedMicros, overExecutions, overMicros: overExecutions * c.standardExecutionMicros, discountMicros: Number(list) - committedMicros };
}

// ------------------------------------------------------------------ creators

/** A share-mode split of revenue: the creator's part rounded half-even, the platform keeps exactly the rest. */
export function revenueSplit(revenueMicros: Micros, creatorPercent: number): { creatorMicros: Micros; platformMicros: Micros } {
  const creatorMicros = divHalfEven(BigInt(revenueMicros) * BigInt(creatorPercent), 100n);
  return { creatorMicros, platformMicros: revenueMicros - creatorMicros };
}

/** A month's payout decision: pay the whole balance at or above the minimum, else carry it over. */
export function payoutDecision(carriedMicros: Micros, earnedMicros: Micros, minimumMicros: Micros): { balanceMicros: Micros; payMicros: Micros; carryMicros: Micros } {
  const balanceMicros = carriedMicros + earnedMicros;
  return balanceMicros >= minimumMicros ? { balanceMicros, payMicros: balanceMicros, carryMicros: 0 } : { balanceMicros, payMicros: 0, carryMicros: balanceMicros };
}
