import { RunnerError } from './errors.ts';
import { errorMessage } from './events.ts';
import type { HungTask } from './task-runner.ts';

export interface HttpAlertClientOptions {
  /** Base URL of the Forge API. */
  baseUrl: string;
  /** API key with the runner role. */
  apiKey: string;
  /** Per-request timeout, ms. Default 5000. */
  timeoutMs?: number;
  /** Attempts (the API dedups per task and day, so a retry never pages twice). Default 3. */
  attempts?: number;
  fetch?: typeof fetch;
}

/** The runner's side of POST /v1/alerts/hung-tasks: a hung task pages on-call through the API's dispatcher. */
export class HttpAlertClient {
  readonly #f: typeof fetch;

  constructor(private readonly o: HttpAlertClientOptions) {
    this.#f = o.fetch ?? fetch;
  }

  /** Reports a hung task; rejects with FORGE_ERR_ALERT_UNAVAILABLE after the last failed attempt. */
  async reportHung(h: HungTask): Promise<{ outcome: string; dedupKeys: string[] }> {
    const body = JSON.stringify({ tenant_id: h.task.tenantId, run_id: h.task.runId, task_id: h.task.taskId, silent_for_ms: Math.round(h.silentMs) });
    let last = '';
    for (let i = 0; i < (this.o.attempts ?? 3); i++) {
      try {
        const res = await this.#f(new URL('/v1/alerts/hung-tasks', this.o.baseUrl), {
          method: 'POST',
          headers: { 'content-type': 'application/json', authorization: `Bearer ${this.o.apiKey}` },
          body,
          signal: AbortSignal.timeout(this.o.timeoutMs ?? 5000),
        });
        const text = await res.text();
        if (res.status === 202) {
          const j = JSON.parse(text) as { outcome: string; dedup_keys: string[] };
          return { outcome: j.outcome, dedupKeys: j.dedup_keys };
        }
        last = errorMessage(text, res.status);
        // A refusal (bad key, another tenant, bad input) will not change on a retry.
        if (res.status < 500 && res.status !== 429) break;
      } catch (e) {
        last = (e as Error).message;
      }
    }
    throw new RunnerError('FORGE_ERR_ALERT_UNAVAILABLE', `POST /v1/alerts/hung-tasks: ${last}`);
  }
}
