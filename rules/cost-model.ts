import type Decimal from 'decimal.js';
import { Dec, decimalUsdToMicros, toDecimal, type Micros } from './money.ts';

/** The cost components of one operation, in the order reports list them. */
export const COMPONENTS = ['rli', 'gas', 'compute', 'storage', 'llm'] as const;
export type Component = (typeof COMPONENTS)[number];
export type ComponentMicros = Record<Component, Micros>;

export type DecimalLike = string | number | Decimal;

/** Inputs of the per-operation cost equations (the Forge pilot cost model). */
export interface OperationInputs {
  /** C_rli_eval, USD per evaluation. */
  rliEvalUsd: DecimalLike;
  /** G_used, gas units. */
  gasUsed: DecimalLike | bigint;
  /** P_gas, gwei per gas unit (may be fractional). */
  gasPriceGwei: DecimalLike;
  /** P_native_usd, USD per native token (ETH). */
  nativeUsd: DecimalLike;
  /** H_task, hours of compute. */
  taskHours: DecimalLike;
  /** C_compute_hour, USD per compute hour. */
  computeHourUsd: DecimalLike;
  /** GB_stored, gigabytes held. */
  gbStored: DecimalLike;
  /** C_storage_gb_month, USD per GB-month. */
  storageGbMonthUsd: DecimalLike;
  /** Expected tasks in the day, for allocating the day's storage; 0 charges it all to this task. */
  expectedTasksDay: number;
  /** LLM token usage priced by model; optional. */
  llm?: readonly LlmUsage[];
  llmPrices?: LlmPriceTable;
}

export interface LlmUsage {
  model: string;
  inputTokens: number;
  outputTokens: number;
}

/** USD per one million tokens, by model. */
export type LlmPriceTable = Readonly<Record<string, { inputPerMTokUsd: DecimalLike; outputPerMTokUsd: DecimalLike }>>;

export interface OperationCost extends ComponentMicros {
  /** Cost_storage_day: the whole day's storage burn, USD micros (not part of total). */
  storageDay: Micros;
  /** Cost_total_op = rli + gas + compute + storage + llm. */
  total: Micros;
}

export class CostModelError extends Error {
  readonly code = 'FORGE_ERR_COST_INPUT';
  constructor(
    readonly field: string,
    /** What is wrong with the field, without its name (callers name it the way their users know it). */
    readonly reason: string,
  ) {
    super(`${field}: ${reason}`);
  }
}

function nonNegative(v: DecimalLike | bigint, field: string): Decimal {
  let d: Decimal;
  try {
    d = toDecimal(typeof v === 'bigint' ? v.toString() : v, field);
  } catch {
    throw new CostModelError(field, typeof v === 'number' ? 'must be a finite number' : `must be a decimal number, got "${String(v)}"`);
  }
  if (d.isNegative()) throw new CostModelError(field, 'must not be negative');
  return d;
}

/** Cost_rli_op = C_rli_eval. */
export function rliCost(rliEvalUsd: DecimalLike): Micros {
  return decimalUsdToMicros(nonNegative(rliEvalUsd, 'rliEvalUsd'));
}

/** Cost_gas_op = G_used * P_gas * 1e-9 * P_native_usd (gas units, gwei, USD per native token). */
export function gasCost(gasUsed: DecimalLike | bigint, gasPriceGwei: DecimalLike, nativeUsd: DecimalLike): Micros {
  const g = nonNegative(gasUsed, 'gasUsed');
  if (!g.isInteger()) throw new CostModelError('gasUsed', 'must be a whole number of gas units');
  const usd = g.times(nonNegative(gasPriceGwei, 'gasPriceGwei')).times('1e-9').times(nonNegative(nativeUsd, 'nativeUsd'));
  return decimalUsdToMicros(usd);
}

/** Gas cost from a receipt: gasUsed x effectiveGasPrice (wei) x native USD. */
export function gasCostFromWei(gasUsed: bigint, effectiveGasPriceWei: bigint, nativeUsd: DecimalLike): Micros {
  const gwei = new Dec(effectiveGasPriceWei.toString()).dividedBy(1e9);
  return gasCost(gasUsed, gwei, nativeUsd);
}

/** Cost_compute_op = H_task * C_compute_hour. */
export function computeCost(taskHours: DecimalLike, computeHourUsd: DecimalLike): Micros {
  return decimalUsdToMicros(nonNegative(taskHours, 'taskHours').times(nonNegative(computeHourUsd, 'computeHourUsd')));
}

/** Cost_storage_day = GB_stored * C_storage_gb_month / 30. */
export function storageDayCost(gbStored: DecimalLike, storageGbMonthUsd: DecimalLike): Micros {
  return decimalUsdToMicros(
    nonNegative(gbStored, 'gbStored').times(nonNegative(storageGbMonthUsd, 'storageGbMonthUsd')).dividedBy(30),
  );
}

/** Cost_storage_op = Cost_storage_day / max(N_tasks_day, 1), from the exact day cost before rounding. */
export function storageOpCost(gbStored: DecimalLike, storageGbMonthUsd: DecimalLike, expectedTasksDay: number): Micros {
  if (!Number.isInteger(expectedTasksDay) || expectedTasksDay < 0) {
    throw new CostModelError('expectedTasksDay', 'must be a whole number >= 0');
  }
  const day = nonNegative(gbStored, 'gbStored').times(nonNegative(storageGbMonthUsd, 'storageGbMonthUsd')).dividedBy(30);
  return decimalUsdToMicros(day.dividedBy(Math.max(expectedTasksDay, 1)));
}

/** LLM token cost: sum over models of tokens x USD per million tokens. Unknown models are an error. */
export function llmCost(usage: readonly LlmUsage[], prices: LlmPriceTable): Micros {
  let usd = new Dec(0);
  for (const [i, u] of usage.entries()) {
    const p = prices[u.model];
    if (!p) throw new CostModelError(`llm[${i}].model`, `no price configured for model "${u.model}"`);
    for (const [field, n] of [['inputTokens', u.inputTokens], ['outputTokens', u.outputTokens]] as const) {
      if (!Number.isSafeInteger(n) || n < 0) throw new CostModelError(`llm[${i}].${field}`, 'must be a whole number >= 0');
    }
    usd = usd
      .plus(new Dec(u.inputTokens).times(nonNegative(p.inputPerMTokUsd, 'inputPerMTokUsd')))
      .plus(new Dec(u.outputTokens).times(nonNegative(p.outputPerMTokUsd, 'outputPerMTokUsd')));
  }
  return decimalUsdToMicros(usd.dividedBy(1_000_000));
}

/** All components of one operation; total is the sum of the rounded components, so sums stay exact. */
export function operationCost(i: OperationInputs): OperationCost {
  const rli = rliCost(i.rliEvalUsd);
  const gas = gasCost(i.gasUsed, i.gasPriceGwei, i.nativeUsd);
  const compute = computeCost(i.taskHours, i.computeHourUsd);
  const storageDay = storageDayCost(i.gbStored, i.storageGbMonthUsd);
  const storage = storageOpCost(i.gbStored, i.storageGbMonthUsd, i.expectedTasksDay);
  const llm = i.llm && i.llm.length > 0 ? llmCost(i.llm, i.llmPrices ?? {}) : 0;
  return { rli, gas, compute, storage, llm, storageDay, total: rli + gas + compute + storage + llm };
}

export function zeroComponents(): ComponentMicros {
  return { rli: 0, gas: 0, compute: 0, storage: 0, llm: 0 };
}

/** The component with the largest amount (ties go to the earlier one in COMPONENTS). */
export function topComponent(c: ComponentMicros): Component {
  // Written out: this runs on the per-task hot path.
  let best: Component = 'rli';
  let v = c.rli;
  if (c.gas > v) {
    best = 'gas';
    v = c.gas;
  }
  if (c.compute > v) {
    best = 'compute';
    v = c.compute;
  }
  if (c.storage > v) {
    best = 'storage';
    v = c.storage;
  }
  if (c.llm > v) best = 'llm';
  return best;
}
