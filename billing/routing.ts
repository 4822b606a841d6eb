import type { BillingCatalog, ModelInfo, ModelTier, Plan } from './plans.ts';

export type RoutingPreference = 'cheapest' | 'best_quality';

export type RouteOutcome =
  | { ok: true; model: ModelInfo; tier: ModelTier; quality: number; candidates: number }
  | { ok: false; reason: 'unknown_skill' | 'no_model_meets_threshold' | 'tier_blocked'; message: string };

/** Blended list price used to rank models: input + output USD micros per million tokens. */
export function blendedPrice(m: ModelInfo): number {
  return m.inputMicrosPerMTok + m.outputMicrosPerMTok;
}

/**
 * Picks a model for a skill (pure): among the models of the skill's recommended tier that the plan does not
 * block and whose quality score for the skill is above the skill's threshold (strictly, as "above" reads),
 * the cheapest, or with `best_quality` the highest score (ties to the cheaper, then by id for determinism).
 * `allowModel` lets the caller narrow further (e.g. only providers the user holds a BYOK key for).
 */
export function routeModel(
  catalog: BillingCatalog,
  skill: string,
  opts: { preference?: RoutingPreference; plan?: Plan; allowModel?: (m: ModelInfo) => boolean } = {},
): RouteOutcome {
  const s = catalog.skills[skill];
  if (s === undefined) return { ok: false, reason: 'unknown_skill', message: `no skill "${skill}" in the catalog` };
  const plan = opts.plan;
  if (plan?.blockedModelTiers.includes(s.tier)) {
    return { ok: false, reason: 'tier_blocked', message: `${plan.name} does not include ${s.tier} models, which "${skill}" needs` };
  }
  const candidates = catalog.models.filter((m) => {
    if (m.tier !== s.tier) return false;
    if (plan?.blockedModels.includes(m.id)) return false;
    if (opts.allowModel && !opts.allowModel(m)) return false;
    const q = m.quality[skill];
    return q !== undefined && q > s.minQuality;
  });
  if (candidates.length === 0) {
    return { ok: false, reason: 'no_model_meets_threshold', message: `no ${s.tier} model scores above ${s.minQuality} for "${skill}"` };
  }
  const pref = opts.preference ?? 'cheapest';
  const q = (m: ModelInfo): number => m.quality[skill] ?? 0;
  const sorted = [...candidates].sort((a, b) => {
    if (pref === 'best_quality' && q(a) !== q(b)) return q(b) - q(a);
    const pa = blendedPrice(a);
    const pb = blendedPrice(b);
    if (pa !== pb) return pa - pb;
    if (pref === 'cheapest' && q(a) !== q(b)) return q(b) - q(a);
    return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
  });
  const model = sorted[0] as ModelInfo;
  return { ok: true, model, tier: s.tier, quality: q(model), candidates: candidates.length };
}

export function findModel(catalog: BillingCatalog, id: string): ModelInfo | undefined {
  return catalog.models.find((m) => m.id === id);
}
