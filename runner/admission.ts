import type { GuardState, Micros, ScopeKey } from '../rules/index.ts';
import { RunnerError } from './errors.ts';
import { errorMessage } from './events.ts';

export interface AdmissionRequest {
  tenantId: string;
  runId: string;
  taskType: string;
  /** Estimated cost, USD (decimal string); the API estimates when absent. */
  estimatedCostUsd?: string;
}

export type AdmissionDecision =
  | { decision: 'allow'; reservationId: string; expiresAt: number }
  | { decision: 'deny'; state: GuardState; reason: string; retryAfterMs: number | null; scope?: ScopeKey };

export interface Settlement {
  /** Actual cost, USD (decimal string). */
  actualCostUsd: string;
  eventId: string;
  /** When the task finalized, epoch ms. */
  finalizedAt?: number;
}

/**
 * Asks the guardrail before each task. An unreachable guardrail rejects (RunnerError
 * FORGE_ERR_ADMISSION_UNAVAILABLE); the runner treats that like a denial: fail closed.
 */
export interface AdmissionClient {
  admit(req: AdmissionRequest, signal?: AbortSignal): Promise<AdmissionDecision>;
  settle(reservationId: string, s: Settlement, signal?: AbortSignal): Promise<'settled' | 'unknown'>;
}

export interface HttpAdmissionOptions {
  /** Base URL of the Forge API, e.g. http://127.0.0.1:8080 */
  baseUrl: string;
  /** API key with the runner role. */
  apiKey: string;
  /** Per-request timeout, ms. Default 2000. */
  timeoutMs?: number;
  fetch?: typeof fetch;
}

interface AllowBody {
  decision: 'allow';
  reservation_id: string;
  expires_at: string;
}
interface DenyBody {
  decision: 'deny';
  state: GuardState;
  reason: string;
  scope?: string;
  retry_after_ms: number | null;
}

/** The runner's side of POST /v1/admissions and POST /v1/admissions/:id/settle. */
export class HttpAdmissionClient implements AdmissionClient {
  private readonly f: typeof fetch;
  private readonly timeoutMs: number;

  constructor(private readonly o: HttpAdmissionOptions) {
    this.f = o.fetch ?? fetch;
    this.timeoutMs = o.timeoutMs ?? 2000;
  }

  async admit(req: AdmissionRequest, signal?: AbortSignal): Promise<AdmissionDecision> {
    const body = {
      tenant_id: req.tenantId,
      run_id: req.runId,
      task_type: req.taskType,
      ...(req.estimatedCostUsd !== undefined ? { estimated_cost_usd: req.estimatedCostUsd } : {}),
    };
    let res: AllowBody | DenyBody;
    try {
      res = (await this.post('/v1/admissions', body, signal)) as AllowBody | DenyBody;
    } catch (e) {
      // A paused intake refuses like a halt until an operator resumes it: the task waits, the runner is fine.
      if ((e as { code?: unknown }).code !== 'FORGE_ERR_INTAKE_PAUSED') throw e;
      return { decision: 'deny', state: 'HARD_STOP', reason: (e as Error).message, retryAfterMs: null, scope: `tenant:${req.tenantId}` };
    }
    if (res.decision === 'allow' && typeof res.reservation_id === 'string') {
      const expiresAt = Date.parse(res.expires_at);
      return { decision: 'allow', reservationId: res.reservation_id, expiresAt: Number.isNaN(expiresAt) ? 0 : expiresAt };
    }
    if (res.decision === 'deny') {
      return {
        decision: 'deny',
        state: res.state,
        reason: res.reason,
        retryAfterMs: typeof res.retry_after_ms === 'number' ? res.retry_after_ms : null,
        ...(res.scope ? { scope: res.scope } : {}),
      };
    }
    throw new RunnerError('FORGE_ERR_ADMISSION_PROTOCOL', `POST /v1/admissions answered ${JSON.stringify(res).slice(0, 200)}`);
  }

  async settle(reservationId: string, s: Settlement, signal?: AbortSignal): Promise<'settled' | 'unknown'> {
    const body = {
      actual_cost_usd: s.actualCostUsd,
      event_id: s.eventId,
      ...(s.finalizedAt !== undefined ? { finalized_at: new Date(s.finalizedAt).toISOString() } : {}),
    };
    const res = (await this.post(`/v1/admissions/${encodeURIComponent(reservationId)}/settle`, body, signal)) as { status?: string };
    if (res.status === 'settled' || res.status === 'unknown') return res.status;
    throw new RunnerError('FORGE_ERR_ADMISSION_PROTOCOL', `settle answered ${JSON.stringify(res).slice(0, 200)}`);
  }

  /**
   * A scope's state and spend as the API holds them (GET /v1/guardrail/:scope). Before a run it is the
   * check that the API answers and takes the key: FORGE_ERR_ADMISSION_UNAVAILABLE when it cannot be
   * reached, FORGE_ERR_API_KEY_REFUSED on 401 / 403.
   */
  async scope(scope: ScopeKey, signal?: AbortSignal): Promise<ScopeView> {
    const v = (await this.request('GET', `/v1/guardrail/${encodeURIComponent(scope)}`, undefined, signal)) as {
      state?: GuardState;
      spend?: { day_usd?: string; run_usd?: string };
    };
    if (typeof v.state !== 'string') throw new RunnerError('FORGE_ERR_ADMISSION_PROTOCOL', `GET /v1/guardrail answered ${JSON.stringify(v).slice(0, 200)}`);
    return { scope, state: v.state, dayUsd: v.spend?.day_usd ?? '0', runUsd: v.spend?.run_usd ?? '0' };
  }

  private post(path: string, body: unknown, signal?: AbortSignal): Promise<unknown> {
    return this.request('POST', path, body, signal);
  }

  private async request(method: 'GET' | 'POST', path: string, body: unknown, signal?: AbortSignal): Promise<unknown> {
    const timeout = AbortSignal.timeout(this.timeoutMs);
    const sig = signal ? AbortSignal.any([signal, timeout]) : timeout;
    let res: Response;
    try {
      res = await this.f(new URL(path, this.o.baseUrl), {
        method,
        headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), authorization: `Bearer ${this.o.apiKey}` },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: sig,
      });
    } catch (e) {
      const c = (e as { cause?: { code?: unknown; errors?: Array<{ code?: unknown }> } }).cause;
      const cause = c?.code ?? c?.errors?.[0]?.code ?? (c as { message?: unknown } | undefined)?.message;
      throw new RunnerError('FORGE_ERR_ADMISSION_UNAVAILABLE', `${method} ${path}: ${(e as Error).message}${typeof cause === 'string' ? ` (${cause})` : ''}`, { cause: e });
    }
    const text = await res.text();
    if (res.status >= 500) throw new RunnerError('FORGE_ERR_ADMISSION_UNAVAILABLE', `${method} ${path}: HTTP ${res.status} ${text.slice(0, 200)}`);
    // A refused key is not a passing outage: retrying cannot help.
    if (res.status === 401 || res.status === 403) throw new RunnerError('FORGE_ERR_API_KEY_REFUSED', `${method} ${path}: ${errorMessage(text, res.status)}`);
    if (res.status === 404 && errorCode(text) === 'FORGE_ERR_TENANT_NOT_FOUND') throw new RunnerError('FORGE_ERR_UNKNOWN_TENANT', `${method} ${path}: ${errorMessage(text, res.status)}`);
    if (res.status === 429 && errorCode(text) === 'FORGE_ERR_INTAKE_PAUSED') throw new RunnerError('FORGE_ERR_INTAKE_PAUSED', `${method} ${path}: ${errorMessage(text, res.status)}`);
    if (res.status !== 200) throw new RunnerError('FORGE_ERR_ADMISSION_PROTOCOL', `${method} ${path}: ${errorMessage(text, res.status)}`);
    try {
      return JSON.parse(text) as unknown;
    } catch (e) {
      throw new RunnerError('FORGE_ERR_ADMISSION_PROTOCOL', `POST ${path}: body is not JSON`, { cause: e });
    }
  }
}

/** The Forge error code of an error body, if it is one. */
function errorCode(text: string): string | undefined {
  try {
    const code = (JSON.parse(text) as { error?: { code?: unknown } }).error?.code;
    return typeof code === 'string' ? code : undefined;
  } catch {
    return undefined;
  }
}

/** A scope as the API reports it: its state and its spend, USD (decimal strings). */
export interface ScopeView {
  scope: ScopeKey;
  state: GuardState;
  dayUsd: string;
  runUsd: string;
}

/** The least of the API's Guardrail an in-process admission needs (guard's Guardrail satisfies it). */
export interface GuardrailPort {
  admit(req: { tenantId: string; runId: string; taskType: string; estimatedMicros?: Micros }): Promise<
    | { decision: 'allow'; reservationId: string; expiresAt: number }
    | { decision: 'deny'; state: GuardState; scope: ScopeKey; reason: string; retryAfterMs: number | null }
  >;
  settle(reservationId: string, actual: { eventId: string; amountMicros: Micros; eventTime: number }): Promise<{ status: 'settled' | 'unknown' }>;
}

/** Admissions through the API's guardrail in the same process (the embedded default, no HTTP hop). */
export function guardrailAdmissionClient(g: GuardrailPort, usdToMicros: (usd: string) => Micros): AdmissionClient {
  return {
    async admit(req) {
      const d = await g.admit({
        tenantId: req.tenantId,
        runId: req.runId,
        taskType: req.taskType,
        ...(req.estimatedCostUsd !== undefined ? { estimatedMicros: usdToMicros(req.estimatedCostUsd) } : {}),
      });
      return d.decision === 'allow' ? { decision: 'allow', reservationId: d.reservationId, expiresAt: d.expiresAt } : d;
    },
    async settle(reservationId, s) {
      return (await g.settle(reservationId, { eventId: s.eventId, amountMicros: usdToMicros(s.actualCostUsd), eventTime: s.finalizedAt ?? Date.now() })).status;
    },
  };
}
