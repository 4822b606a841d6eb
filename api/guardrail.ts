import {
  acknowledgeWarning,
  emptyScope,
  evaluateAt,
  evaluateRollup,
  evaluateTask,
  isHalted,
  liftStop,
  maxState,
  microsToUsd,
  scopesOf,
  totalsOf,
  usdToMicros,
  type BandsBook,
  type ConditionHit,
  type DaySpend,
  type Evaluation,
  type GuardState,
  type Micros,
  type ScopeKey,
  type ScopeSpend,
  type ScopeState,
  type SpendTotals,
  type StateChange,
  type Thresholds,
} from '../rules/index.ts';
import type { CostEvent } from '../store/index.ts';
import { ApiError } from './errors.ts';
import { isLedgerUnavailable } from './ledger/errors.ts';
import { refusalOf } from './ledger/refusal.ts';
import { reservationIdFor, scopesOfReservation } from './ledger/reservation-id.ts';
import type { LiveLedger, ScopeCaps } from './ledger/types.ts';

/** What the guardrail needs of the halt bus (runner/'s HaltBus satisfies it). */
export interface HaltPort {
  publish(change: StateChange): Promise<'published' | 'stale'>;
  subscribe(handler: (c: StateChange) => void): () => void;
  current(scope: ScopeKey): Promise<StateChange | undefined>;
}

/** The store's guardrail_events kinds. */
export type AuditKind = 'state_change' | 'acknowledgement' | 'override' | 'reservation_expired' | 'budget_change';

export interface AuditRecord {
  kind: AuditKind;
  scope: ScopeKey;
  at: number;
  actor: string;
  reason: string;
  state?: GuardState;
  previous?: GuardState;
  seq?: number;
  details?: unknown;
}

export interface GuardrailDeps {
  bands: BandsBook;
  ledger: LiveLedger;
  bus: HaltPort;
  now: () => number;
  /** Every state change (after the bus): alerts, metrics. Must not throw. */
  onChange: (c: StateChange) => void;
  /** An operator acknowledged a warning (alerts stop re-notifying). */
  onAcknowledge?: (scope: ScopeKey, actor: string) => void;
  /** Audit trail writer (guardrail_events). */
  audit: (r: AuditRecord) => Promise<void>;
  onError: (e: unknown, where: string) => void;
  /** Cost_storage_day per scope, USD micros (0 when the scope has none). */
  storageDayMicros?: (scope: ScopeKey) => Micros;
  reservationTtlMs: number;
  /**
   * When the live ledger (Redis) cannot be reached: 'closed' (default) refuses admissions (the route answers
   * 503 FORGE_ERR_LEDGER_UNAVAILABLE); 'open' admits tasks the process's own state does not halt, unreserved.
   */
  onLedgerFailure?: 'closed' | 'open';
}

export type AdmissionDecision =
  | { decision: 'allow'; reservationId: string; expiresAt: number; estimatedMicros: Micros; estimateSource: 'runner' | 'p95' | 'unit_cap'; unreserved?: true }
  | { decision: 'deny'; state: GuardState; scope: ScopeKey; reason: string; retryAfterMs: number | null };

const UNIT_SAMPLES = 200;
const SEEN_EVENTS = 1_000_000;

/**
 * The guardrail: per-scope rule state in memory, fed by accepted events, re-based hourly on the event
 * log; admissions through the live ledger; state changes out to the halt bus, alerts and the audit trail.
 */
export class Guardrail {
  /** The live ledger failed the last reservation (fail-open reports an outage once). */
  private ledgerDown = false;
  private readonly scopes = new Map<ScopeKey, ScopeState>();
  private readonly lastHolds = new Map<ScopeKey, ConditionHit[]>();
  /** States other processes published (Redis bus); admissions honour the higher of the two. */
  private readonly remote = new Map<ScopeKey, StateChange>();
  private readonly seen = new Set<string>();
  /** Recent unit costs per scope and task type, for the p95 estimate. */
  private readonly unitCosts = new Map<string, number[]>();
  private readonly overrides = new Map<ScopeKey, Thresholds>();
  private unsubscribe: (() => void) | undefined;
  private chain: Promise<void> = Promise.resolve();

  constructor(private readonly d: GuardrailDeps) {
    this.unsubscribe = d.bus.subscribe((c) => {
      const mine = this.scopes.get(c.scope);
      if (!mine || c.seq > mine.guard.seq) this.remote.set(c.scope, c);
    });
  }

  close(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
  }

  bandsFor(scope: ScopeKey): Thresholds {
    return this.overrides.get(scope) ?? this.d.bands.forScope(scope);
  }

  /** Replaces a scope's bands at run time (budgets API); re-evaluates the scope at once. */
  setBands(scope: ScopeKey, t: Thresholds): void {
    this.overrides.set(scope, t);
    const s = this.scopes.get(scope);
    if (s) this.apply(scope, evaluateAt(t, s, this.d.now()), 'budget change');
  }

  private stateOf(scope: ScopeKey): ScopeState {
    let s = this.scopes.get(scope);
    if (!s) {
      s = emptyScope(this.d.now(), this.d.storageDayMicros?.(scope) ?? 0);
      this.scopes.set(scope, s);
    }
    return s;
  }

  /** Feeds accepted events (after the durable write) through every scope they touch. Once per event_id. */
  ingest(events: readonly CostEvent[]): void {
    const now = this.d.now();
    for (const ev of events) {
      if (this.seen.has(ev.eventId)) continue;
      this.remember(ev.eventId);
      const task = {
        at: ev.eventTime,
        totalMicros: ev.totalMicros,
        failed: ev.status !== 'success',
        components: { rli: ev.rliMicros, gas: ev.gasMicros, compute: ev.computeMicros, storage: ev.storageMicros, llm: ev.llmMicros },
      };
      const scopes = scopesOf(ev.tenantId, ev.runId);
      for (const scope of scopes) {
        this.apply(scope, evaluateTask(this.bandsFor(scope), this.stateOf(scope), task, Math.max(now, ev.eventTime)), `task ${ev.taskId} finalized`);
        this.noteUnitCost(scope, ev.taskType, ev.totalMicros);
      }
      this.enqueue(async () => {
        await this.d.ledger.record(ev.eventId, scopes, ev.totalMicros, ev.eventTime);
      }, 'ledger record');
    }
  }

  private remember(id: string): void {
    if (this.seen.size >= SEEN_EVENTS) {
      // Oldest first: a Set iterates in insertion order.
      const first = this.seen.values().next().value;
      if (first !== undefined) this.seen.delete(first);
    }
    this.seen.add(id);
  }

  private noteUnitCost(scope: ScopeKey, taskType: string, micros: Micros): void {
    const key = `${scope}\u0000${taskType}`;
    let arr = this.unitCosts.get(key);
    if (!arr) this.unitCosts.set(key, (arr = []));
    arr.push(micros);
    if (arr.length > UNIT_SAMPLES) arr.shift();
  }

  /** p95 of recent unit costs of the task type in the narrowest scope that has some. */
  p95UnitCost(tenantId: string, runId: string, taskType: string): Micros | undefined {
    for (const scope of [...scopesOf(tenantId, runId)].reverse()) {
      const arr = this.unitCosts.get(`${scope}\u0000${taskType}`);
      if (arr && arr.length > 0) {
        const sorted = [...arr].sort((a, b) => a - b);
        return sorted[Math.min(sorted.length - 1, Math.ceil(0.95 * sorted.length) - 1)]!;
      }
    }
    return undefined;
  }

  private apply(scope: ScopeKey, r: Evaluation, reason: string, actor?: string): void {
    this.scopes.set(scope, r.state);
    this.lastHolds.set(scope, r.holds);
    if (r.change) this.announce(scope, r.state, r.change.from, r.holds, r.totals.weekMicros, reason, actor);
  }

  private announce(scope: ScopeKey, s: ScopeState, previous: GuardState, holds: ConditionHit[], weekMicros: Micros, reason: string, actor?: string): void {
    const held = holds.filter((h) => !s.guard.waived.includes(h.id));
    const why = held.length > 0 ? `${reason}: ${held.map((h) => h.id).join(', ')}` : reason;
    const change: StateChange = { scope, state: s.guard.state, previous, seq: s.guard.seq, at: s.guard.since, reason: why, holds, weekMicros, ...(actor ? { actor } : {}) };
    this.remote.delete(scope);
    try {
      this.d.onChange(change);
    } catch (e) {
      this.d.onError(e, 'state change listener');
    }
    this.enqueue(async () => {
      let c = change;
      // Another process (or an earlier life of this one) may hold a higher seq: go above it.
      for (let tries = 0; tries < 3; tries++) {
        if ((await this.d.bus.publish(c)) === 'published') break;
        const cur = await this.d.bus.current(scope);
        c = { ...c, seq: (cur?.seq ?? c.seq) + 1 };
        const st = this.scopes.get(scope);
        if (st) this.scopes.set(scope, { ...st, guard: { ...st.guard, seq: c.seq } });
      }
      await this.d.audit({ kind: actor ? (previous === 'WARNING' && c.state === 'NORMAL' ? 'acknowledgement' : 'override') : 'state_change', scope, at: c.at, actor: actor ?? 'forge', reason: c.reason, state: c.state, previous, seq: c.seq, details: { holds } });
    }, 'publish state change');
  }

  /** Serialises background I/O so audit and bus writes keep their order; never rejects. */
  private enqueue(fn: () => Promise<void>, where: string): void {
    this.chain = this.chain.then(fn).catch((e: unknown) => this.d.onError(e, where));
  }

  /** Waits for background writes (tests, shutdown). */
  async drain(): Promise<void> {
    await this.chain;
  }

  /** The effective state of a scope: its own, or a higher one another process published. */
  effectiveState(scope: ScopeKey): GuardState {
    const own = this.scopes.get(scope)?.guard.state ?? 'NORMAL';
    const other = this.remote.get(scope)?.state;
    return other ? maxState(own, other) : own;
  }

  /** Guardrail view of a scope, from memory (plus the ledger's open reservations). */
  async view(scope: ScopeKey) {
    const now = this.d.now();
    const b = this.bandsFor(scope);
    const s = this.stateOf(scope);
    const r = evaluateAt(b, s, now);
    if (r.change) this.apply(scope, r, 'clock');
    const live = await this.d.ledger.snapshot(scope, now);
    const g = r.state.guard;
    const band = (value: Micros, limit: Micros) => ({ value_usd: microsToUsd(value), limit_usd: microsToUsd(limit), used_ratio: limit > 0 ? Math.round((value / limit) * 10_000) / 10_000 : null });
    return {
      scope,
      state: this.effectiveState(scope),
      since: new Date(g.since).toISOString(),
      seq: g.seq,
      acknowledged: g.acknowledged,
      waived: [...g.waived],
      conditions: r.holds.map((h) => ({
        id: h.id,
        level: h.level,
        metric: h.metric,
        value: h.unit === 'usd_micros' ? microsToUsd(h.value) : String(h.value),
        threshold: h.unit === 'usd_micros' ? microsToUsd(h.threshold) : String(h.threshold),
        unit: h.unit === 'usd_micros' ? 'usd' : h.unit,
        top_component: h.topComponent,
        waived: g.waived.includes(h.id),
      })),
      spend: {
        day_usd: microsToUsd(r.totals.dayMicros),
        week_usd: microsToUsd(r.totals.weekMicros),
        run_usd: microsToUsd(r.totals.runMicros),
        reserved_usd: microsToUsd(live.reservedMicros),
        open_reservations: live.openReservations,
        tasks_today: r.totals.tasksDay,
        failed_today: r.totals.failedDay,
      },
      bands: {
        day_soft: band(r.totals.dayMicros, b.daySoft),
        day_hard: band(r.totals.dayMicros, b.dayHard),
        day_emergency: band(r.totals.dayMicros, b.dayEmergency),
        week_soft: band(r.totals.weekMicros, b.weekSoft),
        week_hard: band(r.totals.weekMicros, b.weekHard),
        run_cap: band(r.totals.runMicros, b.runCap),
        unit_cap: { limit_usd: microsToUsd(b.unitCap), consecutive_at_cap: r.state.spend.consecutiveAtCap, k: b.k },
      },
    };
  }

  /** Caps for admission: a waived hard condition moves its cap up to the emergency level. */
  private capsFor(scope: ScopeKey): ScopeCaps {
    const b = this.bandsFor(scope);
    const waived = this.scopes.get(scope)?.guard.waived ?? [];
    const NO_CAP = Number.MAX_SAFE_INTEGER;
    return {
      dayHard: waived.includes('day_hard') ? b.dayEmergency : b.dayHard,
      weekHard: waived.includes('week_hard') ? NO_CAP : b.weekHard,
      runCap: waived.includes('run_cap') ? NO_CAP : b.runCap,
    };
  }

  /** Reserve, then settle: deny when a scope is halted or a hard cap has no headroom. */
  async admit(req: { tenantId: string; runId: string; taskType: string; estimatedMicros?: Micros }): Promise<AdmissionDecision> {
    const now = this.d.now();
    const scopes = scopesOf(req.tenantId, req.runId);
    for (const scope of scopes) {
      const st = this.effectiveState(scope);
      if (isHalted(st)) {
        return { decision: 'deny', state: st, scope, reason: `${scope} is in ${st}; an operator must lift it`, retryAfterMs: null };
      }
    }
    let estimateSource: 'runner' | 'p95' | 'unit_cap' = 'runner';
    let estimate = req.estimatedMicros;
    if (estimate === undefined) {
      estimate = this.p95UnitCost(req.tenantId, req.runId, req.taskType);
      estimateSource = 'p95';
      if (estimate === undefined || estimate === 0) {
        estimate = this.bandsFor(scopes[2]).unitCap;
        estimateSource = 'unit_cap';
      }
    }
    const reservationId = reservationIdFor(req.tenantId, req.runId);
    let out: Awaited<ReturnType<LiveLedger['reserve']>>;
    try {
      out = await this.d.ledger.reserve({
        reservationId,
        scopes: scopes.map((scope) => ({ scope, caps: this.capsFor(scope) })),
        amountMicros: Math.max(estimate, 1),
        now,
        ttlMs: this.d.reservationTtlMs,
      });
    } catch (e) {
      if (this.d.onLedgerFailure !== 'open' || !isLedgerUnavailable(e)) throw e;
      // Fail open (configured): no reservation is held; the task's event still counts when it arrives.
      // Reported once per outage, not once per admission.
      if (!this.ledgerDown) this.d.onError(e, `admissions allowed unreserved from now until the ledger answers again (FORGE_ADMISSIONS_ON_LEDGER_FAILURE=open); first: ${scopes[2]}`);
      this.ledgerDown = true;
      return { decision: 'allow', reservationId, expiresAt: now + this.d.reservationTtlMs, estimatedMicros: estimate, estimateSource, unreserved: true };
    }
    this.ledgerDown = false;
    if (out.ok) return { decision: 'allow', reservationId, expiresAt: out.expiresAt, estimatedMicros: estimate, estimateSource };
    const { spent, reason, retryAfterMs } = refusalOf(out, now);
    return { decision: 'deny', state: spent ? 'HARD_STOP' : this.effectiveState(out.scope), scope: out.scope, reason, retryAfterMs };
  }

  async settle(reservationId: string, actual: { eventId: string; amountMicros: Micros; eventTime: number }): Promise<'settled' | 'unknown'> {
    const who = scopesOfReservation(reservationId);
    if (!who) throw new ApiError('FORGE_ERR_NOT_FOUND', 'reservation not found', 'id');
    return this.d.ledger.settle(reservationId, { ...actual, scopes: scopesOf(who.tenantId, who.runId) });
  }

  /** Releases expired reservations and logs each; returns how many. */
  async expireReservations(): Promise<number> {
    const expired = await this.d.ledger.expire(this.d.now());
    for (const x of expired) {
      await this.d.audit({ kind: 'reservation_expired', scope: x.scopes[x.scopes.length - 1] ?? 'global', at: this.d.now(), actor: 'forge', reason: `reservation ${x.reservationId} of ${microsToUsd(x.amountMicros)} USD expired unsettled and was released`, details: x });
    }
    return expired.length;
  }

  acknowledge(scope: ScopeKey, actor: string, reason: string): { state: GuardState } {
    const s = this.stateOf(scope);
    const r = acknowledgeWarning(this.bandsFor(scope), s, this.d.now());
    if (!r.ok) throw new ApiError('FORGE_ERR_CONFLICT', `${scope} is in ${s.guard.state}, not WARNING: nothing to acknowledge`, 'scope');
    this.scopes.set(scope, r.state);
    try {
      this.d.onAcknowledge?.(scope, actor);
    } catch (e) {
      this.d.onError(e, 'acknowledge listener');
    }
    if (r.change) {
      this.announce(scope, r.state, r.change.from, this.lastHolds.get(scope) ?? [], 0, `acknowledged by ${actor}: ${reason}`, actor);
    } else {
      this.enqueue(() => this.d.audit({ kind: 'acknowledgement', scope, at: this.d.now(), actor, reason, state: r.state.guard.state, seq: r.state.guard.seq }), 'audit');
    }
    return { state: r.state.guard.state };
  }

  lift(scope: ScopeKey, actor: string, reason: string): { state: GuardState; waived: string[] } {
    const s = this.stateOf(scope);
    const b = this.bandsFor(scope);
    const r = liftStop(b, s, this.d.now());
    if (!r.ok) throw new ApiError('FORGE_ERR_CONFLICT', `${scope} is in ${s.guard.state}: there is no stop to lift`, 'scope');
    this.scopes.set(scope, r.state);
    const ev = evaluateAt(b, r.state, this.d.now());
    this.announce(scope, r.state, r.change!.from, ev.holds, ev.totals.weekMicros, `lifted by ${actor}: ${reason}`, actor);
    return { state: r.state.guard.state, waived: [...r.state.guard.waived] };
  }

  /** The hourly recompute: replace a scope's live totals with the event log's and re-evaluate. */
  rebase(scope: ScopeKey, fromLog: { days: readonly DaySpend[]; run: ScopeSpend['run'] }): void {
    this.apply(scope, evaluateRollup(this.bandsFor(scope), this.stateOf(scope), fromLog, this.d.now()), 'hourly recompute');
  }

  /** Day, week and run totals of a scope now (components are the day's), USD micros, for metrics. */
  totals(scope: ScopeKey): { dayMicros: Micros; weekMicros: Micros; runMicros: Micros; components: SpendTotals['dayComponents'] } {
    const t = totalsOf(this.stateOf(scope).spend, this.d.now());
    return { dayMicros: t.dayMicros, weekMicros: t.weekMicros, runMicros: t.runMicros, components: t.dayComponents };
  }

  knownScopes(): ScopeKey[] {
    return [...this.scopes.keys()];
  }

  /** Seeds a scope's guard from a durable state (restart): its state, seq and since carry over. */
  restore(change: StateChange): void {
    const s = this.stateOf(change.scope);
    if (change.seq <= s.guard.seq) return;
    this.scopes.set(change.scope, { ...s, guard: { ...s.guard, state: change.state, seq: change.seq, since: change.at } });
  }
}

export function usdToMicrosField(v: string | number, field: string): Micros {
  try {
    const m = usdToMicros(v);
    if (m < 0) throw new Error('negative');
    return m;
  } catch {
    throw new ApiError('FORGE_ERR_VALIDATION', `${field} must be a non-negative USD amount`, field);
  }
}
