import { RunnerError } from './errors.ts';

/**
 * The `forge.task.finalized` event as the runner sends it to the collector (POST /v1/events, JSON,
 * collector/event.ts `taskEventSchema`). Only cost inputs: the collector prices the event itself.
 * `reported_*` keys are the runner's own figures; the collector tolerates and ignores them.
 */
export interface TaskFinalizedEvent {
  event_id: string;
  tenant_id: string;
  run_id: string;
  task_id: string;
  task_type: string;
  model?: string;
  environment: string;
  status: 'success' | 'failed';
  /** ISO 8601 UTC. */
  finalized_at: string;
  /** C_rli_eval, USD (decimal string). */
  rli_eval_usd: string;
  /** Reported gas: G_used (gas units) and P_gas (gwei). Absent when the task made no on-chain call. */
  gas?: { gas_used: string; gas_price_gwei: string; chain_id: number };
  /** H_task, hours (decimal string). */
  task_hours: string;
  llm?: Array<{ model: string; input_tokens: number; output_tokens: number }>;
  /** Why the task ended: completed, exit_code, aborted (EMERGENCY_STOP), hung (heartbeat timeout), error. */
  reported_end_reason?: string;
  /** The runner's priced total, USD (what it settles the admission with). */
  reported_total_usd?: string;
}

/** What the collector stored for one event, from its answer. */
export interface EmitReceipt {
  /** Cost_total_op as Forge priced and stored it, USD (decimal string). */
  totalUsd: string;
  /** Already stored before (a retry): counted once. */
  duplicate: boolean;
}

/**
 * Sends a task's cost event. Idempotent by event_id on the collector's side, so retries are safe. Resolves
 * only when the event is stored, with the collector's receipt when it gives one; a refused event rejects
 * (RunnerError FORGE_ERR_EVENTS_REJECTED, not retried).
 */
export interface EventEmitterClient {
  emit(event: TaskFinalizedEvent, signal?: AbortSignal): Promise<EmitReceipt | void>;
}

export interface HttpEventEmitterOptions {
  /** Base URL of the Forge API / collector, e.g. http://127.0.0.1:8080 */
  baseUrl: string;
  apiKey: string;
  timeoutMs?: number;
  fetch?: typeof fetch;
}

export class HttpEventEmitterClient implements EventEmitterClient {
  private readonly f: typeof fetch;
  constructor(private readonly o: HttpEventEmitterOptions) {
    this.f = o.fetch ?? fetch;
  }

  async emit(event: TaskFinalizedEvent, signal?: AbortSignal): Promise<EmitReceipt> {
    const timeout = AbortSignal.timeout(this.o.timeoutMs ?? 5000);
    let res: Response;
    try {
      res = await this.f(new URL('/v1/events', this.o.baseUrl), {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${this.o.apiKey}` },
        body: JSON.stringify(event),
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      });
    } catch (e) {
      throw new RunnerError('FORGE_ERR_EVENTS_UNAVAILABLE', `POST /v1/events: ${(e as Error).message}`, { cause: e });
    }
    const text = await res.text();
    if (res.status === 200) {
      const a = (parseJson(text) as { accepted?: Array<{ total_usd?: unknown; duplicate?: unknown }> } | undefined)?.accepted?.[0];
      if (typeof a?.total_usd !== 'string') throw new RunnerError('FORGE_ERR_EVENTS_REJECTED', `POST /v1/events: HTTP 200 without a receipt: ${text.slice(0, 200)}`);
      return { totalUsd: a.total_usd, duplicate: a.duplicate === true };
    }
    if (res.status >= 500 || res.status === 429) throw new RunnerError('FORGE_ERR_EVENTS_UNAVAILABLE', `POST /v1/events: HTTP ${res.status} ${text.slice(0, 200)}`);
    if (res.status === 401 || res.status === 403) throw new RunnerError('FORGE_ERR_API_KEY_REFUSED', `POST /v1/events: ${errorMessage(text, res.status)}`);
    throw new RunnerError('FORGE_ERR_EVENTS_REJECTED', `POST /v1/events: ${errorMessage(text, res.status)}`);
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** The API's own error message (`{"error":{"message"}}`), or the status and the start of the body. */
export function errorMessage(text: string, status: number): string {
  const m = (parseJson(text) as { error?: { message?: unknown } } | undefined)?.error?.message;
  return typeof m === 'string' ? m : `HTTP ${status} ${text.slice(0, 200)}`;
}
