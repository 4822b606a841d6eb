/**
 * One finalized task's cost, as stored in `cost_events` (one row per task, append-only).
 * Amounts are integer micro-dollars (USD x 1e6). Inputs are kept as given so a row can be re-priced
 * or audited: decimals as strings, gas as a decimal string of a UInt64.
 */
import { COMPONENTS as COMPONENT_KEYS, type Component, type ComponentMicros, type LaterComponent, type OriginalComponent } from '../rules/index.ts';

export type TaskStatus = 'success' | 'failed' | 'retried';

/** How the gas amount was obtained. */
export type GasSource = 'none' | 'reported' | 'receipt' | 'pending' | 'reverted' | 'replaced';

export interface LlmTokens {
  model: string;
  inputTokens: number;
  outputTokens: number;
}

/**
 * One `<component>Micros` field per cost component (COMPONENT_SPECS), USD micros. Components added after
 * the log began are optional (absent = 0), so producers of older events need not name them.
 */
export type ComponentMicrosFields = { [K in OriginalComponent as `${K}Micros`]: number } & { [K in LaterComponent as `${K}Micros`]?: number };

/** Whose key paid an LLM call: the platform's, or the user's own (BYOK, tracked but not charged). */
export type KeySource = 'platform' | 'byok';
export const KEY_SOURCES: readonly KeySource[] = ['platform', 'byok'];

/**
 * Who a cost is attributed to (all optional; rows written before the columns existed read as absent).
 * Ids follow the user-id pattern (1-128 of letters, digits, ._:@-).
 */
export interface Attribution {
  userId?: string;
  agentId?: string;
  /** The skill the task ran (premium skills share revenue with their creator). */
  skillId?: string;
  keySource?: KeySource;
}

export interface CostEvent extends ComponentMicrosFields, Attribution {
  /** Producer-chosen id; the store counts an event_id once however often it arrives. */
  eventId: string;
  tenantId: string;
  runId: string;
  taskId: string;
  taskType: string;
  /** Primary model of the task, '' when none. */
  model: string;
  environment: string;
  status: TaskStatus;
  /** When the task finalized, epoch ms (UTC). */
  eventTime: number;
  /** When Forge accepted it, epoch ms. */
  ingestTime: number;

  /** Sum of the components. */
  totalMicros: number;

  /** G_used, gas units (UInt64 as a decimal string). */
  gasUsed: string;
  /** P_gas, gwei (decimal string). */
  gasPriceGwei: string;
  /** P_native_usd (decimal string). */
  nativeUsd: string;
  gasSource: GasSource;
  chainId: number;
  txHash: string;
  /** H_task, hours (decimal string). */
  taskHours: string;
  /** C_compute_hour, USD (decimal string). */
  computeHourUsd: string;
  /** GB_stored (decimal string). */
  gbStored: string;
  /** C_storage_gb_month, USD (decimal string). */
  storageGbMonthUsd: string;
  llmTokens: LlmTokens[];
  /** Quantities of the metered components (decimal strings in their units, e.g. GB); absent = none. */
  metered?: Partial<Record<Component, string>>;
}

/** The event field holding a component's amount. */
export function microsField(c: Component): `${Component}Micros` {
  return `${c}Micros`;
}

/** The components of an event, USD micros (absent later components are 0). */
/** The amount field of each component, in COMPONENTS order (built once: eventComponents runs per event). */
const MICROS_FIELDS: readonly string[] = COMPONENT_KEYS.map((k) => `${k}Micros`);

export function eventComponents(e: ComponentMicrosFields): ComponentMicros {
  const out = {} as ComponentMicros;
  const rec = e as unknown as Record<string, number | undefined>;
  for (let i = 0; i < COMPONENT_KEYS.length; i++) out[COMPONENT_KEYS[i] as Component] = rec[MICROS_FIELDS[i] as string] ?? 0;
  return out;
}

/** The `<component>Micros` fields of an event from component amounts. */
export function componentFields(c: ComponentMicros): ComponentMicrosFields {
  const out: Record<string, number> = {};
  for (const k of COMPONENT_KEYS) out[`${k}Micros`] = c[k];
  return out as ComponentMicrosFields;
}
