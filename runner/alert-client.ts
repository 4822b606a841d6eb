import { RunnerError } from './errors.ts';
import { errorMessage } from './events.ts';
import type { CostAnomaly, CostCeiling, HungTask } from './task-runner.ts';
import type { TaskSpec } from './types.ts';
import { usdToMicros, microsToUsd } from '../rules/index.ts';

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

/**
 * The runner's side of the API's alert and anomaly routes: a hung task pages on-call (POST
 * /v1/alerts/hung-tasks); a task's in-flight cost ceiling is read before it starts (GET
 * /v1/anomalies/normal-cost) and a kill past it is audited and alerted (POST /v1/anomalies/cost-kill).
 */
export class HttpAlertClient {
  readonly #f: typeof fetch;

  constructor(private readonly o: HttpAlertClientOptions) {
    this.#f = o.fetch ?? fetch;
  }

  /** Reports a hung task; rejects with FORGE_ERR_ALERT_UNAVAILABLE after the last failed attempt. */
  async reportHung(h: HungTask): Promise<{ outcome: string; dedupKeys: string[] }> {
    const j = (await this.#call('POST', '/v1/alerts/hung-tasks', 202, { tenant_id: h.task.tenantId, run_id: h.task.runId, task_id: h.task.taskId, silent_for_ms: Math.round(h.silentMs) })) as { outcome: string; dedup_keys: string[] };
    return { outcome: j.outcome, dedupKeys: j.dedup_keys };
  }

  /** The task's in-flight cost ceiling (3 x its type's normal cost). */
  async costCeiling(task: TaskSpec): Promise<CostCeiling> {
    const q = new URLSearchParams({ tenant_id: task.tenantId, task_type: task.taskType, ...(task.model ? { model: task.model } : {}) });
    const j = (await this.#call('GET', `/v1/anomalies/normal-cost?${q.toString()}`, 200)) as { normal_usd: string; ceiling_usd: string; source: string };
    return { normalMicros: usdToMicros(j.normal_usd), ceilingMicros: usdToMicros(j.ceiling_usd), source: j.source };
  }

  /** Reports a task killed past its ceiling (audited as a guardrail event, alerted on routes.anomaly). */
  async reportCostKill(a: CostAnomaly): Promise<void> {
    await this.#call('POST', '/v1/anomalies/cost-kill', 202, {
      tenant_id: a.task.tenantId,
      run_id: a.task.runId,
      task_id: a.task.taskId,
      task_type: a.task.taskType,
      cost_so_far_usd: microsToUsd(a.costSoFarMicros),
      ceiling_usd: microsToUsd(a.ceiling.ceilingMicros),
      normal_usd: microsToUsd(a.ceiling.normalMicros),
    });
  }

  async #call(method: 'GET' | 'POST', path: string, want: number, body?: unknown): Promise<unknown> {
    let last = '';
    for (let i = 0; i < (this.o.attempts ?? 3); i++) {
      try {
        const res = await this.#f(new URL(path, this.o.baseUrl), {
          method,
          headers: { authorization: `Bearer ${this.o.apiKey}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
          ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
          signal: AbortSignal.timeout(this.o.timeoutMs ?? 5000),
        });
        const text = await res.text();
        if (res.status === want) return JSON.parse(text) as unknown;
        last = errorMessage(text, res.status);
        // A refusal (bad key, another tenant, bad input) will not change on a retry.
        if (res.status < 500 && res.status !== 429) break;
      } catch (e) {
        last = (e as Error).message;
      }
    }
    throw new RunnerError('FORGE_ERR_ALERT_UNAVAILABLE', `${method} ${path.split('?')[0]}: ${last}`);
  }
}
