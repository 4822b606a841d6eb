import type Decimal from 'decimal.js';
import { Dec, decimalUsdToMicros, toDecimal, type Micros } from './money.ts';

/**
 * The cost components, declared once. Everything that lists components (the engine's sums, the store's
 * columns and the audit chain, the metrics, the reports, the FOCUS export, the dashboards, the alerts)
 * derives from this list, so adding a cost type is one entry here (plus its migration, see `since`).
 *
 * - `accrual`: 'operation' amounts are charged per finalized task; 'daily' is a platform burn per UTC day
 *   (storage), allocated to tasks for unit economics but burnt by the guardrail pro rata through the day.
 * - `since`: the canonical version of the audit chain that first covers the component's columns. The
 *   first five were in the log from the start (1); a later one adds a column through a migration and
 *   rows written since hash it (store/rows.ts), while older rows keep verifying under their version.
 * - `metered`: a component priced as quantity x unit price: the task event's `field` carries the
 *   quantity (a decimal in `unit`), `config/pricing.yaml` the price under `<key>.<price>`.
 * - `focus`: how the FOCUS export reports the component: ServiceName, ServiceCategory (FOCUS's allowed
 *   values), and the unit of its quantity (ConsumedUnit / PricingUnit).
 */
export interface ComponentSpec {
  readonly key: string;
  /** Display name (dashboards, reports). */
  readonly label: string;
  /** What it is, one phrase. */
  readonly what: string;
  readonly accrual: 'operation' | 'daily';
  readonly since: number;
  readonly metered?: { readonly field: string; readonly unit: string; readonly price: string };
  readonly focus: { readonly serviceName: string; readonly category: string; readonly unit: string };
}

export const COMPONENT_SPECS = [
  { key: 'rli', label: 'RLI', what: 'RLI evaluation fees', accrual: 'operation', since: 1, focus: { serviceName: 'RLI evaluation', category: 'AI and Machine Learning', unit: 'Evaluations' } },
  { key: 'gas', label: 'gas', what: 'on-chain gas', accrual: 'operation', since: 1, focus: { serviceName: 'On-chain gas', category: 'Other', unit: 'Gas' } },
  { key: 'compute', label: 'compute', what: 'compute hours', accrual: 'operation', since: 1, focus: { serviceName: 'Compute', category: 'Compute', unit: 'Hours' } },
  { key: 'storage', label: 'storage', what: 'data storage', accrual: 'daily', since: 1, focus: { serviceName: 'Storage', category: 'Storage', unit: 'GB-Months' } },
  { key: 'llm', label: 'LLM', what: 'LLM tokens', accrual: 'operation', since: 1, focus: { serviceName: 'LLM inference', category: 'AI and Machine Learning', unit: 'Tokens' } },
  {
    key: 'bandwidth',
    label: 'bandwidth',
    what: 'data transfer',
    accrual: 'operation',
    since: 2,
    metered: { field: 'bandwidth_gb', unit: 'GB', price: 'usd_per_gb' },
    focus: { serviceName: 'Data transfer', category: 'Networking', unit: 'GB' },
  },
] as const satisfies readonly ComponentSpec[];

/** The cost components of one operation, in the order reports list them. */
export type Component = (typeof COMPONENT_SPECS)[number]['key'];
export const COMPONENTS: readonly Component[] = COMPONENT_SPECS.map((s) => s.key);
export type ComponentMicros = Record<Component, Micros>;
/** The components the audit chain covered from its first version. */
export type OriginalComponent = Extract<(typeof COMPONENT_SPECS)[number], { since: 1 }>['key'];
/** Components added later (their columns default to 0 in older rows). */
export type LaterComponent = Exclude<Component, OriginalComponent>;

const SPEC_OF = new Map<Component, ComponentSpec>(COMPONENT_SPECS.map((s) => [s.key, s as ComponentSpec]));
export function componentSpec(c: Component): ComponentSpec {
  return SPEC_OF.get(c) as ComponentSpec;
}

/** Components charged per operation (every one but the daily burns). */
export const OPERATION_COMPONENTS: readonly Component[] = COMPONENT_SPECS.filter((s) => s.accrual === 'operation').map((s) => s.key);
/** Components burnt by the day (storage). */
export const DAILY_COMPONENTS: readonly Component[] = COMPONENT_SPECS.filter((s) => s.accrual === 'daily').map((s) => s.key);
/** Components priced as a quantity x a unit price from the pricing file. */
export const METERED_COMPONENTS: ReadonlyArray<ComponentSpec & { readonly key: Component; readonly metered: NonNullable<ComponentSpec['metered']> }> = (
  COMPONENT_SPECS as readonly ComponentSpec[]
).filter((s) => s.metered !== undefined) as never;

export function isComponent(v: unknown): v is Component {
  return typeof v === 'string' && SPEC_OF.has(v as Component);
}

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
  /** Quantities of the metered components (COMPONENT_SPECS[].metered), in their units; absent = 0. */
  metered?: Partial<Record<Component, DecimalLike>>;
  /** USD per unit of each metered component. */
  meteredPrices?: Partial<Record<Component, DecimalLike>>;
}

/**
 * Token usage of one model. The classes follow the OpenTelemetry GenAI conventions: cache reads and cache
 * writes are part of `inputTokens`, reasoning tokens part of `outputTokens`; each class is priced on its
 * own and the rest of input (output) at the plain price, so no token is counted twice.
 */
export interface LlmUsage {
  model: string;
  inputTokens: number;
  outputTokens: number;
  /** Of inputTokens, read from the provider's prompt cache. */
  cacheReadTokens?: number;
  /** Of inputTokens, written to the prompt cache. */
  cacheCreationTokens?: number;
  /** Of outputTokens, reasoning. */
  reasoningTokens?: number;
}

/** USD per one million tokens, by model; a class without its own price is priced as plain input (output). */
export type LlmPriceTable = Readonly<
  Record<
    string,
    {
      inputPerMTokUsd: DecimalLike;
      outputPerMTokUsd: DecimalLike;
      cacheReadPerMTokUsd?: DecimalLike;
      cacheCreationPerMTokUsd?: DecimalLike;
      reasoningPerMTokUsd?: DecimalLike;
    }
  >
>;

export interface OperationCost extends ComponentMicros {
  /** Cost_storage_day: the whole day's storage burn, USD micros (not part of total). */
  storageDay: Micros;
  /** Cost_total_op: the sum of the components. */
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

/*
 * The exact path. Every input an event carries is a plain decimal (digits, maybe a fraction) and every
 * equation is products and sums of them: as integers scaled by a power of ten, BigInt computes them
 * exactly, and rounding to micro-dollars half-even is then one integer division. decimal.js computes the
 * same numbers to 60 significant digits, so the two agree whenever no intermediate needs more than 60
 * digits; the exact path checks that (and that the result is a safe integer), and leaves anything else
 * (exponents, signs, Decimal arguments, errors to report) to the decimal.js code below it, which stays the
 * definition. Each equation is about ten times cheaper this way, and it runs for every event ingested.
 */

/** value = int / 10^scale. */
interface Scaled {
  int: bigint;
  scale: number;
}

const PLAIN_DECIMAL = /^\d+(?:\.\d+)?$/;
/** Below this an intermediate has at most 60 digits, so decimal.js (precision 60) computed it exactly too. */
const EXACT_LIMIT = 10n ** 60n;
const POW10: bigint[] = Array.from({ length: 200 }, (_, i) => 10n ** BigInt(i));
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
/** Parsed plain decimals: prices repeat on every event; bounded, cleared when full. */
const scaledMemo = new Map<string, Scaled>();

function scaled(v: DecimalLike | bigint): Scaled | undefined {
  if (typeof v === 'number') return Number.isSafeInteger(v) && v >= 0 ? { int: BigInt(v), scale: 0 } : undefined;
  if (typeof v === 'bigint') return v >= 0n ? { int: v, scale: 0 } : undefined;
  if (typeof v !== 'string') return undefined;
  let s = scaledMemo.get(v);
  if (s !== undefined) return s;
  if (v.length > 100 || !PLAIN_DECIMAL.test(v)) return undefined;
  const dot = v.indexOf('.');
  s = dot < 0 ? { int: BigInt(v), scale: 0 } : { int: BigInt(v.slice(0, dot) + v.slice(dot + 1)), scale: v.length - dot - 1 };
  if (scaledMemo.size >= 4096) scaledMemo.clear();
  scaledMemo.set(v, s);
  return s;
}

function times(a: Scaled, b: Scaled): Scaled | undefined {
  const int = a.int * b.int;
  return int < EXACT_LIMIT ? { int, scale: a.scale + b.scale } : undefined;
}

/** USD (int / 10^scale) to micro-dollars, half-even; undefined when not a safe integer (the decimal path says why). */
function exactMicros(usd: Scaled | undefined): Micros | undefined {
  if (usd === undefined || usd.scale >= POW10.length - 6) return undefined;
  let m: bigint;
  if (usd.scale <= 6) m = usd.int * (POW10[6 - usd.scale] as bigint);
  else {
    const d = POW10[usd.scale - 6] as bigint;
    m = usd.int / d;
    const twice = (usd.int - m * d) * 2n;
    if (twice > d || (twice === d && (m & 1n) === 1n)) m += 1n;
  }
  return m <= MAX_SAFE ? Number(m) : undefined;
}

/** Cost_rli_op = C_rli_eval. */
export function rliCost(rliEvalUsd: DecimalLike): Micros {
  return exactMicros(scaled(rliEvalUsd)) ?? decimalUsdToMicros(nonNegative(rliEvalUsd, 'rliEvalUsd'));
}

/** Cost_gas_op = G_used * P_gas * 1e-9 * P_native_usd (gas units, gwei, USD per native token). */
export function gasCost(gasUsed: DecimalLike | bigint, gasPriceGwei: DecimalLike, nativeUsd: DecimalLike): Micros {
  const g0 = scaled(gasUsed);
  const p0 = scaled(gasPriceGwei);
  const n0 = scaled(nativeUsd);
  if (g0 !== undefined && g0.scale === 0 && p0 !== undefined && n0 !== undefined) {
    const gp = times(g0, p0);
    const usd = gp && times({ int: gp.int, scale: gp.scale + 9 }, n0);
    const m = exactMicros(usd);
    if (m !== undefined) return m;
  }
  return gasCostDecimal(gasUsed, gasPriceGwei, nativeUsd);
}

function gasCostDecimal(gasUsed: DecimalLike | bigint, gasPriceGwei: DecimalLike, nativeUsd: DecimalLike): Micros {
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
  const h = scaled(taskHours);
  const r = scaled(computeHourUsd);
  const m = h && r && exactMicros(times(h, r));
  if (m !== undefined) return m;
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
  return llmCostExact(usage, prices) ?? llmCostDecimal(usage, prices);
}

/** The exact path of llmCost for well-formed usage (anything to refuse goes to the decimal path, which names it). */
function llmCostExact(usage: readonly LlmUsage[], prices: LlmPriceTable): Micros | undefined {
  // Sum of tokens x USD per million tokens, as an integer over 10^scale (scale: the prices' largest).
  let sum = 0n;
  let scale = 0;
  const add = (tokens: number, price: DecimalLike): boolean => {
    if (tokens === 0) return scaled(price) !== undefined;
    const p = scaled(price);
    if (p === undefined) return false;
    let term = BigInt(tokens) * p.int;
    if (p.scale > scale) {
      sum *= POW10[p.scale - scale] as bigint;
      scale = p.scale;
    } else term *= POW10[scale - p.scale] as bigint;
    sum += term;
    return sum < EXACT_LIMIT && term < EXACT_LIMIT;
  };
  for (const u of usage) {
    const p = Object.hasOwn(prices, u.model) ? prices[u.model] : undefined;
    if (!p) return undefined;
    const cacheRead = u.cacheReadTokens ?? 0;
    const cacheCreation = u.cacheCreationTokens ?? 0;
    const reasoning = u.reasoningTokens ?? 0;
    for (const n of [u.inputTokens, u.outputTokens, cacheRead, cacheCreation, reasoning]) if (!Number.isSafeInteger(n) || n < 0) return undefined;
    if (cacheRead + cacheCreation > u.inputTokens || reasoning > u.outputTokens) return undefined;
    if (
      !add(u.inputTokens - cacheRead - cacheCreation, p.inputPerMTokUsd) ||
      !add(cacheRead, p.cacheReadPerMTokUsd === undefined ? p.inputPerMTokUsd : p.cacheReadPerMTokUsd) ||
      !add(cacheCreation, p.cacheCreationPerMTokUsd === undefined ? p.inputPerMTokUsd : p.cacheCreationPerMTokUsd) ||
      !add(u.outputTokens - reasoning, p.outputPerMTokUsd) ||
      !add(reasoning, p.reasoningPerMTokUsd === undefined ? p.outputPerMTokUsd : p.reasoningPerMTokUsd)
    ) {
      return undefined;
    }
  }
  return exactMicros({ int: sum, scale: scale + 6 });
}

function llmCostDecimal(usage: readonly LlmUsage[], prices: LlmPriceTable): Micros {
  let usd = new Dec(0);
  for (const [i, u] of usage.entries()) {
    const p = prices[u.model];
    if (!p) throw new CostModelError(`llm[${i}].model`, `no price configured for model "${u.model}"`);
    const cacheRead = u.cacheReadTokens ?? 0;
    const cacheCreation = u.cacheCreationTokens ?? 0;
    const reasoning = u.reasoningTokens ?? 0;
    const counts = [['inputTokens', u.inputTokens], ['outputTokens', u.outputTokens], ['cacheReadTokens', cacheRead], ['cacheCreationTokens', cacheCreation], ['reasoningTokens', reasoning]] as const;
    for (const [field, n] of counts) {
      if (!Number.isSafeInteger(n) || n < 0) throw new CostModelError(`llm[${i}].${field}`, 'must be a whole number >= 0');
    }
    if (cacheRead + cacheCreation > u.inputTokens) throw new CostModelError(`llm[${i}].cacheReadTokens`, 'cache tokens are part of inputTokens and cannot exceed them');
    if (reasoning > u.outputTokens) throw new CostModelError(`llm[${i}].reasoningTokens`, 'reasoning tokens are part of outputTokens and cannot exceed them');
    const input = nonNegative(p.inputPerMTokUsd, 'inputPerMTokUsd');
    const output = nonNegative(p.outputPerMTokUsd, 'outputPerMTokUsd');
    usd = usd
      .plus(new Dec(u.inputTokens - cacheRead - cacheCreation).times(input))
      .plus(new Dec(cacheRead).times(p.cacheReadPerMTokUsd === undefined ? input : nonNegative(p.cacheReadPerMTokUsd, 'cacheReadPerMTokUsd')))
      .plus(new Dec(cacheCreation).times(p.cacheCreationPerMTokUsd === undefined ? input : nonNegative(p.cacheCreationPerMTokUsd, 'cacheCreationPerMTokUsd')))
      .plus(new Dec(u.outputTokens - reasoning).times(output))
      .plus(new Dec(reasoning).times(p.reasoningPerMTokUsd === undefined ? output : nonNegative(p.reasoningPerMTokUsd, 'reasoningPerMTokUsd')));
  }
  return decimalUsdToMicros(usd.dividedBy(1_000_000));
}

/** A metered component's cost: quantity x USD per unit (e.g. GB transferred x USD per GB). */
export function meteredCost(c: Component, quantity: DecimalLike, unitUsd: DecimalLike): Micros {
  const spec = componentSpec(c);
  const field = spec.metered?.field ?? c;
  const q = scaled(quantity);
  const u = scaled(unitUsd);
  const m = q && u && exactMicros(times(q, u));
  if (m !== undefined) return m;
  return decimalUsdToMicros(nonNegative(quantity, field).times(nonNegative(unitUsd, `${c}.${spec.metered?.price ?? 'price'}`)));
}

/** All components of one operation; total is the sum of the rounded components, so sums stay exact. */
export function operationCost(i: OperationInputs): OperationCost {
  const c = zeroComponents() as Record<string, Micros>;
  c.rli = rliCost(i.rliEvalUsd);
  c.gas = gasCost(i.gasUsed, i.gasPriceGwei, i.nativeUsd);
  c.compute = computeCost(i.taskHours, i.computeHourUsd);
  const storageDay = storageDayCost(i.gbStored, i.storageGbMonthUsd);
  c.storage = storageOpCost(i.gbStored, i.storageGbMonthUsd, i.expectedTasksDay);
  c.llm = i.llm && i.llm.length > 0 ? llmCost(i.llm, i.llmPrices ?? {}) : 0;
  for (const m of METERED_COMPONENTS) {
    const q = i.metered?.[m.key];
    if (q === undefined || new Dec(q.toString()).isZero()) continue;
    const p = i.meteredPrices?.[m.key];
    if (p === undefined) throw new CostModelError(m.metered.field, `no ${m.key}.${m.metered.price} price configured`);
    c[m.key] = meteredCost(m.key, q, p);
  }
  const components = c as ComponentMicros;
  return { ...components, storageDay, total: sumComponents(components) };
}

/** One value per component, in COMPONENTS order. */
export function byComponent<T>(f: (c: Component) => T): Record<Component, T> {
  const out = {} as Record<Component, T>;
  for (const k of COMPONENTS) out[k] = f(k);
  return out;
}

/*
 * Component arithmetic runs for every scope of every task (the rules' hot path), so it is compiled once from
 * the list above into straight-line code: object literals of one shape and named fields, no loop over
 * keys (a keyed loop costs several times as much and allocates objects of changing shape).
 */
function compiled<F>(params: readonly string[], body: string): F {
  for (const k of COMPONENTS) if (!/^[a-z_]+$/.test(k)) throw new Error(`component key ${k} is not a plain identifier`);
  return new Function(...params, `'use strict'; ${body}`) as F;
}
const literal = (f: (k: Component) => string): string => `{ ${COMPONENTS.map((k) => `${k}: ${f(k)}`).join(', ')} }`;
const isOperation = (k: Component): boolean => OPERATION_COMPONENTS.includes(k);

export const zeroComponents: () => ComponentMicros = compiled([], `return ${literal(() => '0')};`);

/** Sum of every component. */
export const sumComponents: (c: ComponentMicros) => Micros = compiled(['c'], `return ${COMPONENTS.map((k) => `c.${k}`).join(' + ')};`);

/** Sum of the per-operation components (daily burns left out). */
export const operationSum: (c: ComponentMicros) => Micros = compiled(['c'], `return 0 + ${OPERATION_COMPONENTS.map((k) => `c.${k}`).join(' + ')};`);

/** a + b, component by component (a new object). */
export const addComponents: (a: ComponentMicros, b: ComponentMicros) => ComponentMicros = compiled(['a', 'b'], `return ${literal((k) => `a.${k} + b.${k}`)};`);

/** Adds `c` into `into` in place. */
export const addComponentsInto: (into: ComponentMicros, c: ComponentMicros) => void = compiled(['into', 'c'], COMPONENTS.map((k) => `into.${k} += c.${k};`).join(' '));

const addOperation: (base: ComponentMicros, c: ComponentMicros, sign: number) => ComponentMicros = compiled(
  ['base', 'c', 'sign'],
  `return ${literal((k) => (isOperation(k) ? `base.${k} + sign * c.${k}` : `base.${k}`))};`,
);
/** The per-operation components of `c` added to `base`, whose daily burns are kept as they are. */
export function addOperationComponents(base: ComponentMicros, c: ComponentMicros, sign: 1 | -1 = 1): ComponentMicros {
  return addOperation(base, c, sign);
}

/** `c` with its daily burns set to 0 (the guardrail burns those by the day). */
export function withoutDaily(c: ComponentMicros): ComponentMicros {
  const out = { ...c };
  for (const k of DAILY_COMPONENTS) out[k] = 0;
  return out;
}

/** The component with the largest amount (ties go to the earlier one in COMPONENTS). */
export const topComponent: (c: ComponentMicros) => Component = compiled(
  ['c'],
  `let best = ${JSON.stringify(COMPONENTS[0])}; let v = c.${COMPONENTS[0]}; ${COMPONENTS.slice(1)
    .map((k) => `if (c.${k} > v) { best = ${JSON.stringify(k)}; v = c.${k}; }`)
    .join(' ')} return best;`,
);

/*
 * The same arithmetic over a flat layout (rules/scope-table.ts): a breakdown stored as consecutive numbers
 * of a Float64Array in COMPONENTS order, from offset `at`.
 */
const slot = (k: Component): number => COMPONENTS.indexOf(k);

/** The breakdown stored at `at` (a new object). */
export const componentsAt: (f: Float64Array, at: number) => ComponentMicros = compiled(['f', 'at'], `return ${literal((k) => `f[at + ${slot(k)}]`)};`);

/** Stores `c` at `at`. */
export const setComponentsAt: (f: Float64Array, at: number, c: ComponentMicros) => void = compiled(
  ['f', 'at', 'c'],
  COMPONENTS.map((k) => `f[at + ${slot(k)}] = c.${k};`).join(' '),
);

/** addOperationComponents in place: the per-operation components of `c` added at `at`, daily burns kept. */
export const addOperationComponentsAt: (f: Float64Array, at: number, c: ComponentMicros) => void = compiled(
  ['f', 'at', 'c'],
  COMPONENTS.filter(isOperation)
    .map((k) => `f[at + ${slot(k)}] += c.${k};`)
    .join(' '),
);

/** operationSum of the breakdown stored at `at` (the same additions in the same order). */
export const operationSumAt: (f: Float64Array, at: number) => Micros = compiled(['f', 'at'], `return 0 + ${OPERATION_COMPONENTS.map((k) => `f[at + ${slot(k)}]`).join(' + ')};`);

/** Where the daily burn (storage) sits in a stored breakdown. */
export const STORAGE_SLOT: number = slot('storage');
