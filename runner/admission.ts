import type { Micros } from '../rules/index.ts';
import { isHalted, scopesOf, type GuardState, type ScopeKey } from '../rules/index.ts';
import { refusalOf, reservationIdFor, scopesOfReservation, type LiveLedger, type ScopeCaps } from '../api/ledger/index.ts';
import { RunnerError } from './errors.ts';
import type { HaltBus } from './halt-bus.ts';

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
    const res = (await this.post('/v1/admissions', body, signal)) as AllowBody | DenyBody;
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

  private async post(path: string, body: unknown, signal?: AbortSignal): Promise<unknown> {
    const timeout = AbortSignal.timeout(this.timeoutMs);
    const sig = signal ? AbortSignal.any([signal, timeout]) : timeout;
    let res: Response;
    try {
      res = await this.f(new URL(path, this.o.baseUrl), {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${this.o.apiKey}` },
        body: JSON.stringify(body),
        signal: sig,
      });
    } catch (e) {
      throw new RunnerError('FORGE_ERR_ADMISSION_UNAVAILABLE', `POST ${path}: ${(e as Error).message}`, { cause: e });
    }
    const text = await res.text();
    if (res.status >= 500) throw new RunnerError('FORGE_ERR_ADMISSION_UNAVAILABLE', `POST ${path}: HTTP ${res.status} ${text.slice(0, 200)}`);
    if (res.status !== 200) throw new RunnerError('FORGE_ERR_ADMISSION_PROTOCOL', `POST ${path}: HTTP ${res.status} ${text.slice(0, 300)}`);
    try {
      return JSON.parse(text) as unknown;
    } catch (e) {
      throw new RunnerError('FORGE_ERR_ADMISSION_PROTOCOL', `POST ${path}: body is not JSON`, { cause: e });
    }
  }
}

/** The least of the API's Guardrail an in-process admission needs (api/guardrail.ts satisfies it). */
export interface GuardrailPort {
  admit(req: { tenantId: string; runId: string; taskType: string; estimatedMicros?: Micros }): Promise<
    | { decision: 'allow'; reservationId: string; expiresAt: number }
    | { decision: 'deny'; state: GuardState; scope: ScopeKey; reason: string; retryAfterMs: number | null }
  >;
  settle(reservationId: string, actual: { eventId: string; amountMicros: Micros; eventTime: number }): Promise<'settled' | 'unknown'>;
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
    settle(reservationId, s) {
      return g.settle(reservationId, { eventId: s.eventId, amountMicros: usdToMicros(s.actualCostUsd), eventTime: s.finalizedAt ?? Date.now() });
    },
  };
}

export interface LedgerAdmissionOptions {
  ledger: LiveLedger;
  bus: HaltBus;
  /** Hard caps of a scope (B_day_hard, B_week_hard, B_run_cap), USD micros. */
  capsFor(scope: ScopeKey): ScopeCaps;
  usdToMicros(usd: string): Micros;
  /** Estimate when the runner gives none, USD micros. */
  defaultEstimateMicros: Micros;
  reservationTtlMs?: number;
  now?: () => number;
}

/**
 * Admissions straight against a live ledger and the halt bus, without the API: for a runner that shares
 * Redis with the API processes, and for tests. Same rule as the API: deny when any scope is halted,
 * otherwise reserve atomically against every scope's hard caps. Ledger and bus errors propagate, so
 * the runner fails closed.
 */
export class LedgerAdmissionClient implements AdmissionClient {
  constructor(private readonly o: LedgerAdmissionOptions) {}

  async admit(req: AdmissionRequest): Promise<AdmissionDecision> {
    const now = (this.o.now ?? Date.now)();
    const scopes = scopesOf(req.tenantId, req.runId);
    const states = await Promise.all(scopes.map((s) => this.o.bus.current(s)));
    for (const c of states) {
      if (c && isHalted(c.state)) return { decision: 'deny', state: c.state, scope: c.scope, reason: `${c.scope} is in ${c.state}: ${c.reason}`, retryAfterMs: null };
    }
    const amount = req.estimatedCostUsd !== undefined ? this.o.usdToMicros(req.estimatedCostUsd) : this.o.defaultEstimateMicros;
    const reservationId = reservationIdFor(req.tenantId, req.runId);
    const out = await this.o.ledger.reserve({
      reservationId,
      scopes: scopes.map((scope) => ({ scope, caps: this.o.capsFor(scope) })),
      amountMicros: Math.max(amount, 1),
      now,
      ttlMs: this.o.reservationTtlMs ?? 15 * 60_000,
    });
    if (out.ok) return { decision: 'allow', reservationId, expiresAt: out.expiresAt };
    const r = refusalOf(out, now);
    return { decision: 'deny', state: r.spent ? 'HARD_STOP' : 'NORMAL', scope: out.scope, reason: r.reason, retryAfterMs: r.retryAfterMs };
  }

  async settle(reservationId: string, s: Settlement): Promise<'settled' | 'unknown'> {
    const who = scopesOfReservation(reservationId);
    if (!who) throw new RunnerError('FORGE_ERR_RUNNER_TASK', `not a reservation id: ${reservationId}`, { field: 'reservationId' });
    return this.o.ledger.settle(reservationId, {
      eventId: s.eventId,
      amountMicros: this.o.usdToMicros(s.actualCostUsd),
      eventTime: s.finalizedAt ?? (this.o.now ?? Date.now)(),
      scopes: scopesOf(who.tenantId, who.runId),
    });
  }
}
