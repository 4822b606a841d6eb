import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { usdToMicros, type Micros } from '../rules/index.ts';
import { BillingError } from './errors.ts';

/** Model tiers, cheapest first. */
export const MODEL_TIERS = ['fast', 'standard', 'heavy'] as const;
export type ModelTier = (typeof MODEL_TIERS)[number];

export const PLAN_IDS = ['free', 'pro', 'team', 'enterprise', 'payg'] as const;
export type PlanId = (typeof PLAN_IDS)[number];

export const CHANNELS = ['webhook', 'email', 'slack', 'pagerduty'] as const;
export type Channel = (typeof CHANNELS)[number];

const usd = z
  .string()
  .regex(/^\d+(\.\d{1,6})?$/, 'a decimal USD amount as a string, e.g. "9" or "0.002"');
const count = z.number().int().nonnegative();
const positiveCount = z.number().int().positive();

const planSchema = z
  .object({
    name: z.string().min(1),
    priceUsd: usd.nullable(),
    byokPriceUsd: usd.nullable(),
    perSeat: z.boolean(),
    maxRunningAgents: positiveCount.nullable(),
    executionsPerMonth: positiveCount.nullable(),
    throttleAfter: positiveCount.nullable(),
    throttleIntervalMs: positiveCount,
    overageAvailable: z.boolean(),
    overagePriceUsd: usd.nullable(),
    sandboxTriesPerDay: count.nullable(),
    channels: z.array(z.enum(CHANNELS)).min(1),
    logRetentionHours: positiveCount,
    dailySpendCapUsd: usd.nullable(),
    maxTokensPerExecution: positiveCount,
    blockedModelTiers: z.array(z.enum(MODEL_TIERS)),
    blockedModels: z.array(z.string().min(1)),
    freeMonthlyRuns: count,
    stripe: z.strictObject({ priceId: z.string().min(1).nullable(), byokPriceId: z.string().min(1).nullable() }),
  })
  .strict()
  .superRefine((p, ctx) => {
    if (p.throttleAfter !== null && p.executionsPerMonth !== null && p.throttleAfter > p.executionsPerMonth) {
      ctx.addIssue({ code: 'custom', path: ['throttleAfter'], message: 'must not exceed executionsPerMonth' });
    }
    if (p.overageAvailable && p.overagePriceUsd === null) {
      ctx.addIssue({ code: 'custom', path: ['overagePriceUsd'], message: 'required when overageAvailable is true' });
    }
    if (p.byokPriceUsd !== null && p.stripe.byokPriceId === null && p.priceUsd !== '0') {
      ctx.addIssue({ code: 'custom', path: ['stripe', 'byokPriceId'], message: 'required when byokPriceUsd is set' });
    }
  });

const modelSchema = z
  .object({
    id: z.string().min(1),
    provider: z.string().min(1),
    tier: z.enum(MODEL_TIERS),
    inputUsdPerMTok: usd,
    outputUsdPerMTok: usd,
    quality: z.record(z.string(), z.number().min(0).max(1)),
  })
  .strict();

const fileSchema = z
  .object({
    plans: z.strictObject({ free: planSchema, pro: planSchema, team: planSchema, enterprise: planSchema, payg: planSchema }),
    burnAlertPercents: z.array(z.number().int().min(1).max(1000)).min(1),
    credits: z.strictObject({
      perModelTier: z.strictObject({ fast: positiveCount, standard: positiveCount, heavy: positiveCount }),
      perSandboxTry: count,
      packs: z.record(z.string().regex(/^[a-z][a-z0-9_-]*$/), z.strictObject({ priceUsd: usd, credits: positiveCount })),
    }),
    models: z.array(modelSchema).min(1),
    skills: z.record(z.string().min(1), z.strictObject({ tier: z.enum(MODEL_TIERS), minQuality: z.number().min(0).max(1) })),
  })
  .strict()
  .superRefine((f, ctx) => {
    const seen = new Set<string>();
    f.models.forEach((m, i) => {
      if (seen.has(m.id)) ctx.addIssue({ code: 'custom', path: ['models', i, 'id'], message: `duplicate model id "${m.id}"` });
      seen.add(m.id);
    });
    for (const [skill, s] of Object.entries(f.skills)) {
      if (!f.models.some((m) => m.tier === s.tier && m.quality[skill] !== undefined)) {
        ctx.addIssue({ code: 'custom', path: ['skills', skill], message: `no ${s.tier} model has a quality score for "${skill}"` });
      }
    }
  });

/** One plan, money in integer USD micros. `null` limits mean unlimited (or custom, for Enterprise prices). */
export interface Plan {
  id: PlanId;
  name: string;
  /** Per month, per seat when perSeat; null = custom contract. */
  priceMicros: Micros | null;
  byokPriceMicros: Micros | null;
  perSeat: boolean;
  maxRunningAgents: number | null;
  /** Included executions per month (per seat when perSeat). */
  executionsPerMonth: number | null;
  /** Executions per month (per seat when perSeat) after which one execution per throttleIntervalMs. */
  throttleAfter: number | null;
  throttleIntervalMs: number;
  overageAvailable: boolean;
  overagePriceMicros: Micros | null;
  sandboxTriesPerDay: number | null;
  channels: Channel[];
  logRetentionHours: number;
  /** Per user per UTC day. */
  dailySpendCapMicros: Micros | null;
  maxTokensPerExecution: number;
  blockedModelTiers: ModelTier[];
  blockedModels: string[];
  freeMonthlyRuns: number;
  stripe: { priceId: string | null; byokPriceId: string | null };
}

export interface ModelInfo {
  id: string;
  provider: string;
  tier: ModelTier;
  inputMicrosPerMTok: Micros;
  outputMicrosPerMTok: Micros;
  /** Quality score per skill, 0..1. */
  quality: Record<string, number>;
}

export interface CreditPack {
  id: string;
  priceMicros: Micros;
  credits: number;
}

export interface BillingCatalog {
  plans: Record<PlanId, Plan>;
  burnAlertPercents: number[];
  credits: { perModelTier: Record<ModelTier, number>; perSandboxTry: number; packs: Record<string, CreditPack> };
  models: ModelInfo[];
  skills: Record<string, { tier: ModelTier; minQuality: number }>;
}

export class PlansConfigError extends BillingError {
  constructor(source: string, readonly issues: { path: string; message: string }[]) {
    super('FORGE_ERR_BILLING_CONFIG', `${source}: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`, {
      field: issues[0]?.path,
    });
  }
}

/** Parses YAML text against a schema; throws PlansConfigError naming every bad key (billing's config files). */
export function parseConfigYaml<S extends z.ZodType>(schema: S, yamlText: string, source: string): z.output<S> {
  let raw: unknown;
  try {
    raw = parseYaml(yamlText);
  } catch (err) {
    throw new PlansConfigError(source, [{ path: '(document)', message: (err as Error).message }]);
  }
  const r = schema.safeParse(raw);
  if (!r.success) throw new PlansConfigError(source, r.error.issues.map((i) => ({ path: i.path.length ? i.path.map(String).join('.') : '(root)', message: i.message })));
  return r.data;
}

/** Reads a billing config file; an unreadable one is a PlansConfigError naming it. */
export function readConfigFile(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new PlansConfigError(path, [{ path: '(file)', message: (err as Error).message }]);
  }
}

/** Parses and validates the plans YAML text; throws PlansConfigError naming every bad key. */
export function parsePlans(yamlText: string, source = 'plans.yaml'): BillingCatalog {
  const f = parseConfigYaml(fileSchema, yamlText, source);
  const m = (s: string | null): Micros | null => (s === null ? null : usdToMicros(s));
  const plans = {} as Record<PlanId, Plan>;
  for (const id of PLAN_IDS) {
    const p = f.plans[id];
    plans[id] = {
      id,
      name: p.name,
      priceMicros: m(p.priceUsd),
      byokPriceMicros: m(p.byokPriceUsd),
      perSeat: p.perSeat,
      maxRunningAgents: p.maxRunningAgents,
      executionsPerMonth: p.executionsPerMonth,
      throttleAfter: p.throttleAfter,
      throttleIntervalMs: p.throttleIntervalMs,
      overageAvailable: p.overageAvailable,
      overagePriceMicros: m(p.overagePriceUsd),
      sandboxTriesPerDay: p.sandboxTriesPerDay,
      channels: p.channels,
      logRetentionHours: p.logRetentionHours,
      dailySpendCapMicros: m(p.dailySpendCapUsd),
      maxTokensPerExecution: p.maxTokensPerExecution,
      blockedModelTiers: p.blockedModelTiers,
      blockedModels: p.blockedModels,
      freeMonthlyRuns: p.freeMonthlyRuns,
      stripe: p.stripe,
    };
  }
  const packs: Record<string, CreditPack> = {};
  for (const [id, p] of Object.entries(f.credits.packs)) packs[id] = { id, priceMicros: usdToMicros(p.priceUsd), credits: p.credits };
  return {
    plans,
    burnAlertPercents: [...f.burnAlertPercents].sort((a, b) => a - b),
    credits: { perModelTier: f.credits.perModelTier, perSandboxTry: f.credits.perSandboxTry, packs },
    models: f.models.map((x) => ({
      id: x.id,
      provider: x.provider,
      tier: x.tier,
      inputMicrosPerMTok: usdToMicros(x.inputUsdPerMTok),
      outputMicrosPerMTok: usdToMicros(x.outputUsdPerMTok),
      quality: x.quality,
    })),
    skills: f.skills,
  };
}

/** Reads and validates a plans file (default `config/plans.yaml`, or FORGE_PLANS_FILE in the billing config). */
export function loadPlans(path: string): BillingCatalog {
  return parsePlans(readConfigFile(path), path);
}

export function getPlan(catalog: BillingCatalog, id: string): Plan {
  if (!(PLAN_IDS as readonly string[]).includes(id)) {
    throw new BillingError('FORGE_ERR_BILLING_UNKNOWN_PLAN', `"${id}" (one of ${PLAN_IDS.join(', ')})`, { field: 'planId' });
  }
  return catalog.plans[id as PlanId];
}

export function isPlanId(id: string): id is PlanId {
  return (PLAN_IDS as readonly string[]).includes(id);
}

/** Monthly price of a subscription in USD micros; null for a custom (Enterprise) price. */
export function subscriptionPriceMicros(plan: Plan, opts: { byok: boolean; seats: number }): Micros | null {
  const unit = opts.byok && plan.byokPriceMicros !== null ? plan.byokPriceMicros : plan.priceMicros;
  if (unit === null) return null;
  return plan.perSeat ? unit * Math.max(1, opts.seats) : unit;
}
