import type { LlmPriceTable } from '../rules/index.ts';

/**
 * What a task costs, as the producer knows it before running: the inputs of the cost model.
 * Amounts are decimal strings (USD, gwei) or whole numbers (gas units, tokens).
 */
export interface CostProfile {
  /** C_rli_eval, USD per evaluation. */
  rliEvalUsd: string;
  /** G_used, gas units of the task's on-chain submission (0 when none). */
  gasUsed: number;
  /** H_task, expected hours of compute. */
  runtimeHours: string;
  /** LLM tokens by model. */
  llm: Array<{ model: string; inputTokens: number; outputTokens: number }>;
}

/** Prices the runner uses for its estimate and its settle amount (the collector prices the event itself). */
export interface Pricing {
  /** C_compute_hour, USD. */
  computeHourUsd: string;
  /** P_gas, gwei. */
  gasPriceGwei: string;
  /** P_native_usd, USD per native token. */
  nativeUsd: string;
  chainId: number;
  llm: LlmPriceTable;
}

/** How to run the task (the child-process executor's input). */
export interface TaskCommand {
  /** Executable; `node` means this Node binary. */
  cmd: string;
  args: string[];
  env?: Record<string, string>;
  cwd?: string;
}

/** One task job, as queued (BullMQ job data, or an in-process queue entry). JSON only. */
export interface TaskSpec {
  taskId: string;
  tenantId: string;
  runId: string;
  taskType: string;
  /** Primary model, '' when none. */
  model?: string;
  environment?: string;
  /** Cost inputs; the admission estimate and the settled cost are priced from them. */
  profile?: CostProfile;
  /** Estimated cost, USD (decimal string); overrides the profile's price for the admission. */
  estimatedCostUsd?: string;
  command?: TaskCommand;
  /**
   * Wall-clock seconds per reported task hour: a simulated task of 0.5 h at 2 s/h runs 1 s and reports
   * 0.5 h x (elapsed / expected). Default 3600 (real time).
   */
  secondsPerHour?: number;
  /** A task silent (no heartbeat) longer than this is flagged and killed, ms. Default from the runner. */
  heartbeatTimeoutMs?: number;
}

export type TaskEndReason = 'completed' | 'exit_code' | 'aborted' | 'hung' | 'error';

/** What happened to one task that started. */
export interface TaskOutcome {
  taskId: string;
  tenantId: string;
  runId: string;
  taskType: string;
  /** As recorded in the cost event: aborted and hung tasks are 'failed'. */
  status: 'success' | 'failed';
  reason: TaskEndReason;
  detail?: string;
  eventId: string;
  reservationId: string;
  startedAt: number;
  endedAt: number;
  /** Settled cost (the runner's price), USD micros. */
  costMicros: number;
  /** Whether the collector stored the cost event. */
  emitted: boolean;
  /**
   * What the collector stored for the task, USD micros: its receipt's amount (it prices the event itself),
   * the runner's price when the collector gives no receipt, 0 when the event was not stored.
   */
  recordedMicros: number;
  /** Why the cost event was not stored (the collector's refusal, or the last delivery failure). */
  notRecorded?: { code: string; reason: string };
  /** Whether the admission was settled. */
  settled: boolean;
}

/** Why a task did not start this time. */
export interface Postponed {
  taskId: string;
  tenantId: string;
  runId: string;
  cause: 'halted' | 'denied' | 'halt_state_unavailable' | 'admission_unavailable' | 'run_terminated';
  /** With admission_unavailable: the error's code (an outage is retried; a refused key is not). */
  code?: string;
  /** The scope and state behind a halt or denial. */
  scope?: string;
  state?: string;
  reason: string;
  retryAfterMs: number;
}
