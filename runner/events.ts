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

/** Sends a task's cost event. Idempotent by event_id on the collector's side, so retries are safe. */
export interface EventEmitterClient {
  emit(event: TaskFinalizedEvent, signal?: AbortSignal): Promise<void>;
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

  async emit(event: TaskFinalizedEvent, signal?: AbortSignal): Promise<void> {
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
    if (res.status === 200) return;
    if (res.status >= 500 || res.status === 429) throw new RunnerError('FORGE_ERR_EVENTS_UNAVAILABLE', `POST /v1/events: HTTP ${res.status} ${text.slice(0, 200)}`);
    throw new RunnerError('FORGE_ERR_EVENTS_REJECTED', `POST /v1/events: HTTP ${res.status} ${text.slice(0, 300)}`);
  }
}
