import type { Micros } from '../rules/index.ts';
import { MODEL_TIERS, type BillingCatalog, type Plan } from './plans.ts';
import { routeModel, type RoutingPreference } from './routing.ts';
import { priceAt, type UsagePricing } from './usage-pricing.ts';

/** Where a step of the fallback chain runs, in failover order. */
export const FALLBACK_CLASSES = ['local', 'free', 'groq', 'paid'] as const;
export type FallbackClass = (typeof FALLBACK_CLASSES)[number];

export interface FallbackStep {
  model: string;
  provider: string;
  class: FallbackClass;
  /** The user price per 1M tokens in force now, USD micros. */
  priceInputMicros: Micros;
  priceOutputMicros: Micros;
}

function classOf(provider: string, cost: { input: Micros; output: Micros }): FallbackClass {
  if (provider === 'ollama') return 'local';
  if (provider === 'openrouter' && cost.input === 0 && cost.output === 0) return 'free';
  if (provider === 'groq') return 'groq';
  return 'paid';
}

/**
 * The ordered chain a runner fails over along without asking again (pure): local Ollama, free OpenRouter
 * models, Groq, then paid providers. Paid steps are the catalog's models the plan allows, of the skill's tier
 * or a lighter one, that meet the skill's quality threshold: the routed model first, then by user price.
 * Every step carries the price book's user price in force at `now`; models without one are left out.
 */
export function fallbackChain(catalog: BillingCatalog, pricing: UsagePricing, skill: string, opts: { plan: Plan; now: number; preference?: RoutingPreference }): FallbackStep[] {
  const s = catalog.skills[skill];
  if (!s) return [];
  const routed = routeModel(catalog, skill, { plan: opts.plan, ...(opts.preference ? { preference: opts.preference } : {}) });
  const primary = routed.ok ? routed.model.id : null;
  const maxTier = MODEL_TIERS.indexOf(s.tier);
  const steps: FallbackStep[] = [];
  const seen = new Set<string>();
  for (const e of pricing.priceBook) {
    if (seen.has(e.model)) continue;
    const now = priceAt(pricing.priceBook, e.model, opts.now);
    if (!now) continue;
    seen.add(e.model);
    const cls = classOf(now.provider, now.cost);
    if (cls === 'paid') {
      const m = catalog.models.find((x) => x.id === now.model);
      if (!m || opts.plan.blockedModelTiers.includes(m.tier) || opts.plan.blockedModels.includes(m.id) || MODEL_TIERS.indexOf(m.tier) > maxTier) continue;
      if (m.id !== primary && !((m.quality[skill] ?? 0) > s.minQuality)) continue;
    }
    steps.push({ model: now.model, provider: now.provider, class: cls, priceInputMicros: now.price.input, priceOutputMicros: now.price.output });
  }
  const rank = (x: FallbackStep): number => FALLBACK_CLASSES.indexOf(x.class);
  const price = (x: FallbackStep): number => x.priceInputMicros + x.priceOutputMicros;
  return steps.sort((a, b) => rank(a) - rank(b) || Number(b.model === primary) - Number(a.model === primary) || price(a) - price(b) || (a.model < b.model ? -1 : 1));
}
