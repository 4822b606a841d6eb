import {
  GLOBAL_SCOPE,
  isHalted,
  runScope,
  tenantScope,
  type GuardState,
  type ScopeKey,
  type StateChange,
} from '../rules/index.ts';
import type { HaltBus } from '../guard/index.ts';
import type { HoldGuard } from './credits/ledger.ts';

/**
 * The least billing needs from the halt bus (guard/ implements it: in-process and Redis).
 * `current` lets billing learn a scope's state it missed a push for.
 */
export type HaltSource = Pick<HaltBus, 'subscribe'> & Partial<Pick<HaltBus, 'current'>>;

export type GateDecision = { ok: true } | { ok: false; scope: ScopeKey; state: GuardState; reason: string };

/**
 * Billing's subscriber on the halt bus. While a scope (global, tenant, run) is HARD_STOP or EMERGENCY_STOP it
 * refuses new credit holds and job starts and contract submissions there; on EMERGENCY_STOP it also aborts
 * the AbortSignals handed to contract submissions in flight. State is kept per scope with the bus's seq, so
 * a late or replayed change never undoes a newer one.
 */
export class BillingHaltGate {
  private readonly states = new Map<ScopeKey, StateChange>();
  private readonly primed = new Set<ScopeKey>();
  private readonly submissions = new Map<ScopeKey, Set<AbortController>>();
  private unsubscribe: (() => void) | null = null;

  constructor(
    private readonly source: HaltSource,
    private readonly opts: { onError?: (err: unknown, where: string) => void; onEmergency?: (c: StateChange) => void } = {},
  ) {}

  start(): this {
    if (!this.unsubscribe) this.unsubscribe = this.source.subscribe((c) => this.onChange(c));
    return this;
  }

  stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = null;
  }

  /**
   * Reads the durable state of the scopes a job touches that this gate has not yet heard of, so a gate that
   * missed a push (started late, reconnected) learns the state before deciding. Errors go to onError and
   * leave the gate as it was.
   */
  async prime(tenantId: string, runId?: string): Promise<void> {
    const current = this.source.current?.bind(this.source);
    if (!current) return;
    const scopes = scopesFor(tenantId, runId).filter((s) => !this.primed.has(s));
    await Promise.all(
      scopes.map(async (s) => {
        try {
          const c = await current(s);
          if (c) this.onChange(c);
          this.primed.add(s);
        } catch (err) {
          this.opts.onError?.(err, `billing halt gate: current(${s})`);
        }
      }),
    );
  }

  /** May a new job start / a credit hold be taken for this tenant (and run)? */
  check(tenantId: string, runId?: string): GateDecision {
    for (const scope of scopesFor(tenantId, runId)) {
      const c = this.states.get(scope);
      if (c && isHalted(c.state)) return { ok: false, scope, state: c.state, reason: c.reason };
    }
    return { ok: true };
  }

  /** Contract submissions follow the same halts (HARD_STOP halts them, EMERGENCY_STOP aborts those in flight). */
  canSubmitContract(tenantId: string, runId?: string): GateDecision {
    return this.check(tenantId, runId);
  }

  /**
   * A signal for one contract submission; aborted on EMERGENCY_STOP of its global, tenant or run scope
   * (already aborted when one holds now). Call `done()` when the submission finished.
   */
  submissionSignal(tenantId: string, runId?: string): { signal: AbortSignal; done: () => void } {
    const ac = new AbortController();
    const scopes = scopesFor(tenantId, runId);
    const emergency = scopes.map((s) => this.states.get(s)).find((c) => c?.state === 'EMERGENCY_STOP');
    if (emergency) {
      ac.abort(haltReason(emergency));
      return { signal: ac.signal, done: () => {} };
    }
    for (const s of scopes) {
      let set = this.submissions.get(s);
      if (!set) this.submissions.set(s, (set = new Set()));
      set.add(ac);
    }
    return {
      signal: ac.signal,
      done: () => {
        for (const s of scopes) {
          const set = this.submissions.get(s);
          set?.delete(ac);
          if (set?.size === 0) this.submissions.delete(s);
        }
      },
    };
  }

  /** The credit ledger's hold guard. */
  holdGuard(): HoldGuard {
    return ({ owner, runId }) => {
      const d = this.check(owner, runId);
      return d.ok ? { ok: true } : { ok: false, scope: d.scope, state: d.state };
    };
  }

  stateOf(scope: ScopeKey): GuardState {
    return this.states.get(scope)?.state ?? 'NORMAL';
  }

  private onChange(c: StateChange): void {
    try {
      const prev = this.states.get(c.scope);
      if (prev && prev.seq >= c.seq) return;
      this.states.set(c.scope, c);
      if (c.state === 'EMERGENCY_STOP') {
        const reason = haltReason(c);
        const victims = new Set<AbortController>();
        for (const [s, set] of this.submissions) if (covers(c.scope, s)) for (const ac of set) victims.add(ac);
        for (const ac of victims) ac.abort(reason);
        this.opts.onEmergency?.(c);
      }
    } catch (err) {
      this.opts.onError?.(err, 'billing halt gate');
    }
  }
}

function scopesFor(tenantId: string, runId?: string): ScopeKey[] {
  return runId === undefined ? [GLOBAL_SCOPE, tenantScope(tenantId)] : [GLOBAL_SCOPE, tenantScope(tenantId), runScope(tenantId, runId)];
}

/** Does a halt of scope `halted` cover the registration scope `s`? (The registrations are per job scope.) */
function covers(halted: ScopeKey, s: ScopeKey): boolean {
  if (halted === GLOBAL_SCOPE) return true;
  return s === halted;
}

function haltReason(c: StateChange): Error {
  const e = new Error(`${c.state} on ${c.scope}: ${c.reason}`);
  e.name = 'HaltError';
  return e;
}
