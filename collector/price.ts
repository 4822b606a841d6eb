import {
  computeCost,
  CostModelError,
  Dec,
  gasCost,
  isZeroAmount,
  llmCost,
  meteredCost,
  METERED_COMPONENTS,
  MoneyError,
  rliCost,
  storageOpCost,
  sumComponents,
  topComponent,
  zeroComponents,
  type Component,
} from '../rules/index.ts';
import { componentFields, type CostEvent, type GasSource } from '../store/index.ts';
import type { ChainReader, NativePriceSource } from './chain.ts';
import { NO_COMPUTE_ENVIRONMENT, type Rejection, type TaskEvent } from './event.ts';
import { computeHourUsd, type Pricing } from './pricing.ts';

export interface PriceDeps {
  pricing: Pricing;
  /** Needed only for events naming a tx hash. */
  chain?: ChainReader;
  nativePrice: NativePriceSource;
  /** Tasks expected today, for allocating storage (yesterday's count; default: pricing.storage.expectedTasksDay). */
  expectedTasksDay?: number;
  /** Epoch ms, stamped as ingestTime. */
  now: number;
}

export type PriceOutcome = { ok: true; event: CostEvent } | ({ ok: false } & Rejection);

/** The event field a component's amount comes from, for naming it when an amount is refused. */
const INPUT_FIELD: Partial<Record<Component, string>> = { rli: 'rli_eval_usd', gas: 'gas', compute: 'task_hours', storage: 'environment', llm: 'llm' };
function componentField(c: Component): string {
  return INPUT_FIELD[c] ?? METERED_COMPONENTS.find((m) => m.key === c)?.metered.field ?? c;
}
const COST_FIELD: Record<string, string> = {
  rliEvalUsd: 'rli_eval_usd',
  gasUsed: 'gas.gas_used',
  gasPriceGwei: 'gas.gas_price_gwei',
  nativeUsd: 'gas',
  taskHours: 'task_hours',
  computeHourUsd: 'environment',
};

// Cost_storage_op depends only on configuration and the day's expected count: computed once per key.
const storageMemo = new Map<string, number>();
function storageOp(gb: string, gbMonth: string, expected: number): number {
  const key = `${gb}|${gbMonth}|${expected}`;
  let v = storageMemo.get(key);
  if (v === undefined) {
    v = storageOpCost(gb, gbMonth, expected);
    if (storageMemo.size > 1000) storageMemo.clear();
    storageMemo.set(key, v);
  }
  return v;
}

class FieldError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}

/** Runs one cost equation; a refused input or an out-of-range amount names the event field it came from. */
function component(field: string, fn: () => number): number {
  try {
    return fn();
  } catch (e) {
    if (e instanceof CostModelError) throw new FieldError(COST_FIELD[e.field] ?? e.field, e.reason);
    if (e instanceof MoneyError) throw new FieldError(field, `the amount is out of range (${e.message})`);
    throw e;
  }
}

function reject(field: string, reason: string): PriceOutcome {
  return { ok: false, code: 'FORGE_ERR_VALIDATION', field, reason };
}

/** The gas inputs of an event, as reported or read from its transaction's receipt. */
interface GasInputs {
  gasSource: GasSource;
  gasUsed: string;
  gasPriceGwei: string;
  chainId: number;
  txHash: string;
}

const NO_GAS: GasInputs = { gasSource: 'none', gasUsed: '0', gasPriceGwei: '0', chainId: 0, txHash: '' };

function needsNative(g: GasInputs): boolean {
  return g.gasUsed !== '0' && !isZeroAmount(g.gasPriceGwei);
}

/**
 * Prices one validated event with the cost model (rules/cost-model.ts): Forge computes every component
 * from the inputs; nothing the producer computed is used. Chain lookups may throw UnavailableError
 * (retryable, 503); everything wrong with the event itself is a Rejection naming the field.
 */
export async function priceTaskEvent(ev: TaskEvent, deps: PriceDeps): Promise<PriceOutcome> {
  const { pricing } = deps;
  // An LLM call reported as a span runs nowhere Forge prices compute: the reserved environment charges none.
  const hourUsd = computeHourUsd(pricing, ev.environment) ?? (ev.environment === NO_COMPUTE_ENVIRONMENT && isZeroAmount(ev.taskHours) ? '0' : undefined);
  if (hourUsd === undefined) return reject('environment', `no compute price configured for environment "${ev.environment}"`);

  let g = NO_GAS;
  if (ev.gas.kind === 'reported') {
    g = { gasSource: 'reported', gasUsed: ev.gas.gasUsed, gasPriceGwei: ev.gas.gasPriceGwei, chainId: ev.gas.chainId, txHash: '' };
  } else if (ev.gas.kind === 'tx') {
    if (!deps.chain) return reject('gas.tx_hash', 'no chain RPC is configured to read receipts (set FORGE_RPC_URL)');
    const nodeChain = await deps.chain.chainId();
    if (nodeChain !== ev.gas.chainId) return reject('gas.chain_id', `the configured chain is ${nodeChain}, not ${ev.gas.chainId}`);
    const hint = ev.gas.from !== undefined && ev.gas.nonce !== undefined ? { from: ev.gas.from, nonce: ev.gas.nonce } : undefined;
    const tx = await deps.chain.txGas(ev.gas.txHash, hint);
    if (tx.status === 'not_found') {
      return reject('gas.tx_hash', `transaction not found on chain ${nodeChain}${hint ? '' : ' (give gas.from and gas.nonce to record a replaced transaction)'}`);
    }
    // A reverted transaction still paid for its gas.
    const paid = tx.status === 'receipt' || tx.status === 'reverted';
    g = {
      gasSource: tx.status,
      gasUsed: paid ? tx.gasUsed.toString() : '0',
      gasPriceGwei: paid ? new Dec(tx.effectiveGasPriceWei.toString()).dividedBy(1e9).toFixed() : '0',
      chainId: ev.gas.chainId,
      txHash: ev.gas.txHash,
    };
  }
  return priceWith(ev, deps, hourUsd, g, needsNative(g) ? await deps.nativePrice.usd() : '0');
}

/**
 * priceTaskEvent without waiting, for an event that names no transaction (gas reported, or none): the
 * collector prices a batch's usual events in one pass with the native price read once. Undefined when the
 * event needs a chain lookup, or the native price and `nativeUsd` is not given: priceTaskEvent then.
 */
export function priceReportedGas(ev: TaskEvent, deps: PriceDeps, nativeUsd: string | undefined): PriceOutcome | undefined {
  if (ev.gas.kind === 'tx') return undefined;
  const g: GasInputs = ev.gas.kind === 'reported' ? { gasSource: 'reported', gasUsed: ev.gas.gasUsed, gasPriceGwei: ev.gas.gasPriceGwei, chainId: ev.gas.chainId, txHash: '' } : NO_GAS;
  const hourUsd = computeHourUsd(deps.pricing, ev.environment) ?? (ev.environment === NO_COMPUTE_ENVIRONMENT && isZeroAmount(ev.taskHours) ? '0' : undefined);
  if (hourUsd === undefined) return reject('environment', `no compute price configured for environment "${ev.environment}"`);
  const native = needsNative(g) ? nativeUsd : '0';
  if (native === undefined) return undefined;
  return priceWith(ev, deps, hourUsd, g, native);
}

/** The cost equations once the gas inputs and the native price are known. */
function priceWith(ev: TaskEvent, deps: PriceDeps, hourUsd: string, g: GasInputs, nativeUsd: string): PriceOutcome {
  const { pricing } = deps;
  const { gasSource, gasUsed, gasPriceGwei, chainId, txHash } = g;
  const expected = deps.expectedTasksDay ?? pricing.storage.expectedTasksDay;

  const c = zeroComponents();
  try {
    c.rli = component('rli_eval_usd', () => rliCost(ev.rliEvalUsd));
    c.gas = component(ev.gas.kind === 'reported' ? 'gas.gas_used' : 'gas.tx_hash', () => gasCost(gasUsed, gasPriceGwei, nativeUsd));
    c.compute = component('task_hours', () => computeCost(ev.taskHours, hourUsd));
    c.storage = component('environment', () => storageOp(pricing.storage.gbStored, pricing.storage.gbMonthUsd, expected));
    c.llm = component('llm', () => (ev.llm.length > 0 ? llmCost(ev.llm, pricing.llm) : 0));
    for (const m of METERED_COMPONENTS) {
      const q = ev.metered[m.key];
      if (q === undefined) continue;
      const unitUsd = pricing.metered?.[m.key];
      if (unitUsd === undefined) return reject(m.metered.field, `no price configured for ${m.key} (${m.key}.${m.metered.price} in the pricing file)`);
      c[m.key] = component(m.metered.field, () => meteredCost(m.key, q, unitUsd));
    }
  } catch (e) {
    if (e instanceof FieldError) return reject(e.field, e.message);
    throw e;
  }
  const total = sumComponents(c);
  if (!Number.isSafeInteger(total) || total > pricing.limits.maxOpMicros) {
    const top = topComponent(c);
    return reject(componentField(top), `operation cost ${new Dec(total).dividedBy(1e6).toFixed()} USD (mostly ${top}) is above the limit of ${pricing.limits.maxOpUsd} USD`);
  }
  return {
    ok: true,
    event: {
      eventId: ev.eventId,
      tenantId: ev.tenantId,
      runId: ev.runId,
      taskId: ev.taskId,
      taskType: ev.taskType,
      model: ev.model,
      environment: ev.environment,
      status: ev.status,
      eventTime: ev.finalizedAt,
      ingestTime: deps.now,
      ...componentFields(c),
      totalMicros: total,
      gasUsed,
      gasPriceGwei,
      nativeUsd,
      gasSource,
      chainId,
      txHash,
      taskHours: ev.taskHours,
      computeHourUsd: hourUsd,
      gbStored: pricing.storage.gbStored,
      storageGbMonthUsd: pricing.storage.gbMonthUsd,
      llmTokens: ev.llm.map((u) => ({ model: u.model, inputTokens: u.inputTokens, outputTokens: u.outputTokens })),
      ...(Object.keys(ev.metered).length > 0 ? { metered: { ...ev.metered } } : {}),
      ...ev.attribution,
    },
  };
}
