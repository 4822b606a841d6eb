import { computeCost, gasCost, llmCost, rliCost, storageOpCost, type Micros } from '../rules/index.ts';
import { computeHourUsd, type Pricing } from './pricing.ts';

/**
 * What a task can cost at most, as a runner knows it before starting: the evaluation fee, the prompt and
 * the `max_tokens` of each LLM call, the gas limit and the max fee per gas, the compute time limit of its
 * environment. Forge prices each term with the same price book the collector uses and reserves the sum.
 */
export interface TaskBounds {
  /** C_rli_eval, USD (decimal string). */
  evaluationFeeUsd?: string;
  llm?: ReadonlyArray<{ model: string; promptTokens: number; maxTokens: number }>;
  /** Gas units the task may use at most. */
  gasLimit?: number;
  /** Max fee per gas, gwei (decimal string). */
  maxFeeGwei?: string;
  /** Compute time limit, hours (decimal string), in `environment`. */
  computeHours?: string;
  environment?: string;
}

export type BoundsOutcome =
  | { ok: true; micros: Micros; terms: { rli: Micros; llm: Micros; gas: Micros; compute: Micros; storage: Micros } }
  | { ok: false; field: string; reason: string };

/**
 * Prices a task's bounds. A term that cannot be priced (a model with no price, an environment with no
 * compute rate, gas without a fixed native-token price) is refused with the field, never taken as zero.
 * `nativeUsd` is USD per native token, or undefined when it is not known without a chain read.
 */
export function priceTaskBounds(b: TaskBounds, pricing: Pricing, nativeUsd: string | undefined): BoundsOutcome {
  const terms = { rli: 0, llm: 0, gas: 0, compute: 0, storage: 0 };
  try {
    if (b.evaluationFeeUsd !== undefined) terms.rli = rliCost(b.evaluationFeeUsd);
  } catch (e) {
    return { ok: false, field: 'bounds.evaluation_fee_usd', reason: (e as { reason?: string }).reason ?? 'must be a non-negative USD amount' };
  }
  for (const [i, call] of (b.llm ?? []).entries()) {
    if (!pricing.llm[call.model]) return { ok: false, field: `bounds.llm[${i}].model`, reason: `no price in the price book for model "${call.model}"` };
    terms.llm += llmCost([{ model: call.model, inputTokens: call.promptTokens, outputTokens: call.maxTokens }], pricing.llm);
  }
  if (b.gasLimit !== undefined || b.maxFeeGwei !== undefined) {
    if (b.gasLimit === undefined || b.maxFeeGwei === undefined) return { ok: false, field: b.gasLimit === undefined ? 'bounds.gas_limit' : 'bounds.max_fee_gwei', reason: 'gas is bounded by gas_limit and max_fee_gwei together' };
    if (nativeUsd === undefined) return { ok: false, field: 'bounds.gas_limit', reason: 'gas cannot be priced ahead: the native token price is read from the chain (set native_price.source: fixed, or send estimated_cost_usd)' };
    terms.gas = gasCost(b.gasLimit, b.maxFeeGwei, nativeUsd);
  }
  if (b.computeHours !== undefined) {
    const rate = computeHourUsd(pricing, b.environment ?? '');
    if (rate === undefined) return { ok: false, field: 'bounds.environment', reason: `no compute price for environment "${b.environment ?? ''}"` };
    terms.compute = computeCost(b.computeHours, rate);
  }
  terms.storage = storageOpCost(pricing.storage.gbStored, pricing.storage.gbMonthUsd, pricing.storage.expectedTasksDay);
  return { ok: true, micros: terms.rli + terms.llm + terms.gas + terms.compute + terms.storage, terms };
}
