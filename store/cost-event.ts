/**
 * One finalized task's cost, as stored in `cost_events` (one row per task, append-only).
 * Amounts are integer micro-dollars (USD x 1e6). Inputs are kept as given so a row can be re-priced
 * or audited: decimals as strings, gas as a decimal string of a UInt64.
 */
export type TaskStatus = 'success' | 'failed' | 'retried';

/** How the gas amount was obtained. */
export type GasSource = 'none' | 'reported' | 'receipt' | 'pending' | 'reverted' | 'replaced';

export interface LlmTokens {
  model: string;
  inputTokens: number;
  outputTokens: number;
}

export interface CostEvent {
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

  rliMicros: number;
  gasMicros: number;
  computeMicros: number;
  storageMicros: number;
  llmMicros: number;
  /** Sum of the five components. */
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
}
