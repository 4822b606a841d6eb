import {
  GUARD_STATES,
  withoutDaily,
  acknowledgeWarning,
  dayLabel,
  dayOf,
  evaluateAt,
  evaluateRollup,
  isHalted,
  liftStop,
  microsToUsd,
  ScopeTable,
  scopesOf,
  thresholdsOf,
  totalsOf,
  usdToMicros,
  waivedAt,
  type Bands,
  type BandsBook,
  type BudgetVersion,
  type ChangeKind,
  type ConditionHit,
  type DaySpend,
  type Evaluation,
  type GuardState,
  type GuardStatus,
  type Micros,
  type ScopeKey,
  type ScopeSpend,
  type ScopeState,
  type SpendTotals,
  type StateChange,
  type Thresholds,
} from '../rules/index.ts';
import { eventComponents, type ComponentMicrosFields, type CostEvent, type GuardrailEventKind, type GuardrailEventRow } from '../store/index.ts';
import { GuardError } from './errors.ts';
import { LearnedEstimates } from './estimates.ts';
import { withoutBatch, type RedisSharedSpend, type SeedScope, type SpendItem } from './shared-spend.ts';
import type { HaltBus } from './halt-bus.ts';
import { isLedgerUnavailable } from './ledger/errors.ts';
import { FifoMap } from './fifo.ts';
import { OpenReservations } from './open-reservations.ts';
import { refusalOf } from './ledger/refusal.ts';
import { lastReservationSerial, reservationIdFor, scopesOfReservation } from './ledger/reservation-id.ts';
import type { LiveLedger, ScopeCaps } from './ledger/types.ts';

/** What the guardrail needs of the halt bus. */
export type HaltPort = Pick<HaltBus, 'publish' | 'subscribe' | 'current'>;

/** The guardrail_events kinds the guard writes. */
export type AuditKind = GuardrailEventKind;

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
  /** Idempotency key (a hard day is recorded once however many processes see it). */
  eventId?: string;
}

export interface GuardrailDeps {
  bands: BandsBook;
  ledger: LiveLedger;
  bus: HaltPort;
  now: () => number;
  /** Every state transition this process published (alerts, metrics). Must not throw. */
  onChange: (c: StateChange) => void;
  /** An operator acknowledged a warning, here or in another process (alerts stop re-notifying). */
  onAcknowledge?: (scope: ScopeKey, actor: string) => void;
  /** Audit trail writer (guardrail_events). */
  audit: (r: AuditRecord) => Promise<void>;
  onError: (e: unknown, where: string) => void;
  /** Cost_storage_day per scope, USD micros (0 when the scope has none). */
  storageDayMicros?: (scope: ScopeKey) => Micros;
  reservationTtlMs: number;
  /** Event ids remembered per process (default 1,000,000): memory bounded by configuration, not traffic. */
  maxTrackedEvents?: number;
  /** The spend shared by every API process (Redis); absent: this process's memory is the whole truth. */
  sharedSpend?: SharedSpendPort;
  /** Every scope's spend from the event log, to seed an empty shared spend. */
  spendSeed?: () => Promise<Map<ScopeKey, SeedScope>>;
  /**
   * When the live ledger (Redis) cannot be reached: 'closed' (default) refuses admissions (the route answers
   * 503 FORGE_ERR_LEDGER_UNAVAILABLE); 'open' admits tasks the process's own state does not halt, unreserved.
   */
  onLedgerFailure?: 'closed' | 'open';
}

export type AdmissionDecision =
  | { decision: 'allow'; reservationId: string; expiresAt: number; estimatedMicros: Micros; estimateSource: EstimateSource; learnedFactor?: number; unreserved?: true }
  | { decision: 'deny'; state: GuardState; scope: ScopeKey; reason: string; retryAfterMs: number | null; intakePaused?: { since: number; reason: string } };

/**
 * The tenants' intake as admissions see it (guard/intake.ts IntakeGate): a paused tenant's admissions are
 * refused, for every caller of admit (the API, in-process runners, eval runs); an allowed one is counted.
 */
export interface IntakePort {
  paused(tenantId: string): { since: number; reason: string } | undefined;
  admitted(tenantId: string): void;
}

/** What the guard needs of a shared spend (guard/shared-spend.ts). */
export type SharedSpendPort = Pick<RedisSharedSpend, 'add' | 'read' | 'seed' | 'mark'>;

/**
 * Where a reservation's amount came from: the task's priced bounds (what it can cost at most), the runner's
 * estimate (scaled up by the learned ratio once there is history: 'runner_learned'), a high quantile of
 * the task type's actual costs ('learned_p99'), or the scope's unit cap.
 */
export type EstimateSource = 'bounds' | 'runner' | 'runner_learned' | 'learned_p99' | 'unit_cap';

/** A task as the live state takes it in: an ingested cost event, or a settle (the amount only). */
export type LiveTask = Pick<CostEvent, 'eventId' | 'tenantId' | 'runId' | 'taskId' | 'taskType' | 'eventTime' | 'status' | 'totalMicros'> & ComponentMicrosFields;

/** The scopes of a task, each with its caps, as a reservation names them (never changed once built). */
type ReserveScopes = readonly [{ readonly scope: ScopeKey; readonly caps: ScopeCaps }, { readonly scope: ScopeKey; readonly caps: ScopeCaps }, { readonly scope: ScopeKey; readonly caps: ScopeCaps }];

/** A run admitted recently: its scopes (widest first), their bands as of `bandsEpoch`, its last reservation list. */
interface AdmittedRun {
  scopes: readonly [ScopeKey, ScopeKey, ScopeKey];
  bands: readonly [Thresholds, Thresholds, Thresholds] | undefined;
  bandsEpoch: number;
  reserve: ReserveScopes | undefined;
}

/** Runs whose scopes are kept for admissions, at most (then the entries are built again). */
const MAX_RUNS = 10_000;

/** Events kept for the shared spend while Redis is away, at most (then the log is their truth at restart). */
const MAX_PENDING_SHARED = 100_000;

/** What became of a published change: taken, lost to another process's change, superseded, or the bus unreachable. */
type PublishResult = 'published' | 'stale' | 'superseded' | 'failed';

export type SettleResult = { status: 'settled' | 'unknown'; reservedMicros: Micros; overrun: boolean };

export type ExtendDecision =
  | { decision: 'allow'; reservedMicros: Micros; expiresAt: number }
  | { decision: 'deny'; state: GuardState; scope: ScopeKey; reason: string; retryAfterMs: number | null };

/** What the log says of a scope's spend (the rebuild and the hourly recompute). Storage excluded. */
export interface LogSpend {
  /** Every UTC day with activity, any order. */
  days: readonly DaySpend[];
  run: ScopeSpend['run'];
}


/** The guard status a published change carries (a change from before control snapshots: its state and seq). */
export function guardOfChange(c: StateChange): GuardStatus {
  return c.control?.guard ? { ...c.control.guard, seq: c.seq } : { state: c.state, since: c.at, seq: c.seq, acknowledged: false, waived: [], dayWaivers: [] };
}

/** Whether an operator's lift covers this hit: by id, and for a day condition by its day too. */
function isWaivedHit(g: GuardStatus, h: ConditionHit): boolean {
  return h.day === undefined ? g.waived.includes(h.id) : (g.dayWaivers ?? []).some((w) => w.id === h.id && w.day === h.day);
}

const AUDIT_KIND: Record<ChangeKind, AuditKind> = { transition: 'state_change', acknowledgement: 'acknowledgement', lift: 'override', budget: 'budget_change' };
const CHANGE_KIND: Partial<Record<string, ChangeKind>> = { state_change: 'transition', acknowledgement: 'acknowledgement', override: 'lift', budget_change: 'budget' };

/**
 * The state change an audited guard row records (the inverse of how a change is audited): its holds and
 * control state from the details; the 7-day burn is not audited (0). A state that is not a guard state
 * reads as NORMAL (a previous one as the state).
 */
export function changeOfAuditRow(r: GuardrailEventRow): StateChange {
  const details = (r.details ?? {}) as { holds?: ConditionHit[]; control?: StateChange['control'] };
  const state = asGuardState(r.state);
  return {
    scope: r.scope as ScopeKey,
    state,
    previous: asGuardState(r.previous, state),
    seq: r.seq,
    at: r.at,
    reason: r.reason,
    holds: Array.isArray(details.holds) ? details.holds : [],
    weekMicros: 0,
    ...(r.actor !== 'forge' ? { actor: r.actor } : {}),
    kind: CHANGE_KIND[r.kind] ?? 'transition',
    ...(details.control ? { control: details.control } : {}),
  };
}

function asGuardState(s: string, otherwise: GuardState = 'NORMAL'): GuardState {
  return (GUARD_STATES as readonly string[]).includes(s) ? (s as GuardState) : otherwise;
}

/**
 * The guardrail: per-scope rule state in memory, fed by accepted events, re-based hourly on the event
 * log; admissions through the live ledger. Every change of a scope's control state (a transition, an
 * acknowledgement, a lift, a budget version) bumps its seq and is published on the halt bus as one
 * StateChange carrying the whole control state; the bus stores it compare-and-set by seq, so of two
 * processes making the same change one wins and the other adopts it (nothing is announced twice), and
 * every process adopts what another published. Each published change is audited in guardrail_events,
 * from which a restart rebuilds the same state (guard/rebuild.ts).
 */
export class Guardrail {
  /** The live ledger failed the last reservation (fail-open reports an outage once). */
  private ledgerDown = false;
  private intake: IntakePort | undefined;
  /**
   * Every scope's rule state (spend, guard, hard days, the last evaluation's holds) in the rules' flat
   * layout: a task adds to it in place and allocates nothing when no condition can hold.
   */
  private readonly scopes = new ScopeTable();
  /** Budget versions per scope (oldest first); absent: the bands file's version 1. */
  private readonly budgets = new Map<ScopeKey, { versions: BudgetVersion[]; thresholds: Thresholds }>();
  private readonly seen = new FifoMap<string, true>();
  /** Learned actual/estimate ratios and actual costs per tenant and task type. */
  readonly learned = new LearnedEstimates();
  /** This process's open reservations: what a settle needs to learn from and to flag an overrun. */
  private readonly openHere = new OpenReservations(100_000);
  /** Bumped by every change of `budgets`: what was derived from the bands of a scope is derived again. */
  private budgetsEpoch = 0;
  /** Runs admitted recently (by tenant and run): their scopes and what a reservation names, built once. */
  private readonly runs = new Map<string, AdmittedRun>();
  /** The caps of a scope without waivers, one object per bands (the usual case: shared, not rebuilt). */
  private readonly plainCaps = new WeakMap<Thresholds, ScopeCaps>();
  private unsubscribe: (() => void) | undefined;
  /** Per scope: bumped when another process's state replaces ours, so what we queued on the old one is dropped. */
  private readonly generation = new Map<ScopeKey, number>();
  /** Events a Redis outage kept out of the shared spend: added when it answers again (bounded). */
  private readonly pendingShared: SpendItem[] = [];
  /** Scopes whose newest change the bus did not take (unreachable): published again by `republish`. */
  private readonly unpublished = new Set<ScopeKey>();
  /**
   * Background I/O in three ordered lanes, so that a halt on the bus never waits behind a store write:
   * bus publishes, ledger records, audit appends.
   */
  private readonly lanes: Record<'bus' | 'ledger' | 'audit', Promise<void>> = { bus: Promise.resolve(), ledger: Promise.resolve(), audit: Promise.resolve() };

  constructor(private readonly d: GuardrailDeps) {
    this.unsubscribe = d.bus.subscribe((c) => this.adopt(c, false));
  }

  close(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
  }

  bandsFor(scope: ScopeKey): Thresholds {
    return this.budgets.get(scope)?.thresholds ?? this.d.bands.forScope(scope);
  }

  /** The budget version in force for a scope. */
  budget(scope: ScopeKey): BudgetVersion {
    return this.ownBudget(scope) ?? this.fileBudget(scope);
  }

  /** The newest budget version set through the API (in force, carried by every published change), if any. */
  private ownBudget(scope: ScopeKey): BudgetVersion | undefined {
    const own = this.budgets.get(scope)?.versions;
    return own && own.length > 0 ? own[own.length - 1] : undefined;
  }

  /** Every version of a scope's bands, oldest first (version 1: the bands file). */
  budgetHistory(scope: ScopeKey): BudgetVersion[] {
    const own = this.budgets.get(scope)?.versions ?? [];
    const first = own[0];
    return first?.version === 1 ? [...own] : [this.fileBudget(scope), ...own];
  }

  private fileBudget(scope: ScopeKey): BudgetVersion {
    const t = this.d.bands.forScope(scope);
    return { version: 1, bands: { daySoft: t.daySoft, dayHard: t.dayHard, weekSoft: t.weekSoft, weekHard: t.weekHard, runCap: t.runCap, unitCap: t.unitCap, k: t.k }, actor: 'config', reason: 'bands file', at: 0 };
  }

  private putBudget(scope: ScopeKey, v: BudgetVersion): boolean {
    const cur = this.budgets.get(scope);
    if (cur && cur.versions.some((x) => x.version >= v.version)) return false;
    this.budgets.set(scope, { versions: [...(cur?.versions ?? []), v], thresholds: thresholdsOf(v.bands) });
    this.budgetsEpoch++;
    return true;
  }

  /**
   * A new budget version for a scope (budgets API): in force at once in this process, on every other
   * within the bus's push, and after a restart (guardrail_events); then the scope is re-evaluated.
   */
  async changeBudget(scope: ScopeKey, bands: Bands, actor: string, reason: string): Promise<BudgetVersion> {
    // Compare-and-set on the bus: if another process changed the scope first, its state is adopted and
    // the change is made again on top of it (the next version number), a few times at most.
    for (let attempt = 0; ; attempt++) {
      const now = this.d.now();
      const v: BudgetVersion = { version: this.budget(scope).version + 1, bands, actor, reason, at: now };
      this.putBudget(scope, v);
      const s = this.stateOf(scope);
      const next: ScopeState = { ...s, guard: { ...s.guard, seq: s.guard.seq + 1 } };
      this.scopes.set(scope, next);
      const out = await this.announce(scope, 'budget', s.guard.state, this.scopes.holds(scope), 0, reason, actor);
      if (out === 'published' || out === 'failed' || attempt >= 4) {
        this.apply(scope, evaluateAt(thresholdsOf(bands), this.stateOf(scope), this.d.now()), 'budget change');
        return v;
      }
    }
  }

  /** A copy of the scope's state (added empty when absent). */
  private stateOf(scope: ScopeKey): ScopeState {
    return this.scopes.stateAt(this.scopeNumber(scope));
  }

  /** The scope's number in the table (added empty when absent). */
  private scopeNumber(scope: ScopeKey): number {
    const i = this.scopes.indexOf(scope);
    return i >= 0 ? i : this.scopes.ensure(scope, this.d.now(), this.d.storageDayMicros?.(scope) ?? 0);
  }

  /**
   * Feeds events the store newly accepted (never a replay: the collector passes only what the write
   * appended) through every scope they touch. An event id also counts once per process life, and with a
   * shared spend (Redis) once across processes: there each touched scope's spend is first set to the shared
   * one as it stood before this batch, so the stop conditions read what every process has taken in.
   * Without a shared spend the evaluation completes before this returns (synchronously).
   */
  ingest(events: readonly LiveTask[]): Promise<void> {
    const batch: LiveTask[] = [];
    for (const ev of events) {
      if (this.seen.has(ev.eventId)) continue;
      this.remember(ev.eventId);
      batch.push(ev);
    }
    if (batch.length === 0) return Promise.resolve();
    const ss = this.d.sharedSpend;
    if (!ss) {
      this.evaluateBatch(batch);
      return Promise.resolve();
    }
    return this.ingestShared(batch, ss);
  }

  private async ingestShared(batch: LiveTask[], ss: SharedSpendPort): Promise<void> {
    const items: SpendItem[] = batch.map((ev) => ({
      eventId: ev.eventId,
      scopes: scopesOf(ev.tenantId, ev.runId),
      at: ev.eventTime,
      components: withoutDaily(eventComponents(ev)),
      failed: ev.status !== 'success',
    }));
    let use = batch;
    try {
      let counted = await ss.add(items);
      if (counted === 'unseeded') {
        // Redis came up empty: seed it from the event log (which holds this batch already), then mark the
        // batch's ids as seen without adding them again.
        await ss.seed(this.d.spendSeed ?? (async () => new Map()));
        await ss.mark(items);
        counted = items.map(() => true);
      }
      const flags = counted;
      use = batch.filter((_, i) => flags[i]);
      if (use.length === 0) return;
      const now = this.d.now();
      const scopes = [...new Set(use.flatMap((ev) => scopesOf(ev.tenantId, ev.runId)))];
      const days = new Set<number>();
      for (let d = dayOf(now) - 7; d <= dayOf(now); d++) days.add(d);
      for (const ev of use) days.add(dayOf(ev.eventTime));
      const shared = await ss.read(scopes, [...days]);
      for (const scope of scopes) {
        const snap = shared.get(scope);
        if (!snap) continue;
        const mine = use.filter((ev) => scopesOf(ev.tenantId, ev.runId).includes(scope)).map((ev) => ({ day: dayOf(ev.eventTime), components: withoutDaily(eventComponents(ev)), failed: ev.status !== 'success' }));
        this.takeShared(scope, withoutBatch(snap, mine));
      }
    } catch (e) {
      // Redis unreachable: evaluate on this process's own view now, and add the batch to the shared spend
      // when Redis answers again (adding is idempotent by event id, so a batch that did land is not doubled).
      this.d.onError(e, 'shared spend');
      this.pendingShared.push(...items);
      if (this.pendingShared.length > MAX_PENDING_SHARED) {
        const dropped = this.pendingShared.splice(0, this.pendingShared.length - MAX_PENDING_SHARED);
        this.d.onError(new GuardError('FORGE_ERR_UNAVAILABLE', `${dropped.length} events could not be added to the shared spend (Redis away too long); the next restart takes them from the log`), 'shared spend');
      }
    }
    this.evaluateBatch(use);
  }

  /** Adds to the shared spend what a Redis outage kept out of it. Timer-driven; throws while Redis is away. */
  private async flushPendingShared(ss: SharedSpendPort): Promise<void> {
    while (this.pendingShared.length > 0) {
      const batch = this.pendingShared.slice(0, 1000);
      const r = await ss.add(batch);
      if (r === 'unseeded') {
        // Redis came back empty: the seed from the log holds these events already.
        await ss.seed(this.d.spendSeed ?? (async () => new Map()));
        await ss.mark(batch);
      }
      this.pendingShared.splice(0, batch.length);
    }
  }

  /** Replaces a scope's day buckets and run totals with the shared ones (storage of finished days kept). */
  private takeShared(scope: ScopeKey, snap: { days: readonly DaySpend[]; run: ScopeSpend['run'] }): void {
    const s = this.stateOf(scope);
    const storage = s.spend.run.components.storage;
    const run = { components: { ...snap.run.components, storage }, totalMicros: snap.run.totalMicros + storage, tasks: snap.run.tasks };
    this.scopes.set(scope, { ...s, spend: { ...s.spend, days: [...snap.days].sort((a, b) => b.day - a.day).slice(0, 8), run } });
  }

  private evaluateBatch(batch: readonly LiveTask[]): void {
    const now = this.d.now();
    for (const ev of batch) {
      const task = {
        at: ev.eventTime,
        totalMicros: ev.totalMicros,
        failed: ev.status !== 'success',
        components: eventComponents(ev),
      };
      const scopes = scopesOf(ev.tenantId, ev.runId);
      const at = Math.max(now, ev.eventTime);
      for (const scope of scopes) {
        // In place; an evaluation comes back only when a condition holds or the guard changed.
        const r = this.scopes.evaluateTask(this.scopeNumber(scope), this.bandsFor(scope), task, at);
        if (r === undefined) continue;
        this.recordHardDays(scope, r.hardDaysBefore, r.evaluation.state.spend.hardDays);
        if (r.evaluation.change) void this.announce(scope, 'transition', r.evaluation.change.from, r.evaluation.holds, r.evaluation.totals.weekMicros, `task ${ev.taskId} finalized`);
      }
      this.learned.noteCost(ev.tenantId, ev.taskType, ev.totalMicros);
      this.enqueue(async () => {
        await this.d.ledger.record(ev.eventId, scopes, ev.totalMicros, ev.eventTime);
      }, 'ledger record', 'ledger');
    }
  }

  private remember(id: string): void {
    this.seen.evict(0, (this.d.maxTrackedEvents ?? 1_000_000) - 1);
    this.seen.set(id, true);
  }

  private apply(scope: ScopeKey, r: Evaluation, reason: string): void {
    const before = this.scopes.hardDays(scope);
    this.scopes.set(scope, r.state, r.holds);
    this.recordHardDays(scope, before, r.state.spend.hardDays);
    if (r.change) void this.announce(scope, 'transition', r.change.from, r.holds, r.totals.weekMicros, reason);
  }

  /** A hard day is durable (guardrail_events, one row per scope and day however many processes see it). */
  private recordHardDays(scope: ScopeKey, before: readonly number[], after: readonly number[]): void {
    if (after === before) return;
    const had = new Set(before);
    for (const day of after) {
      if (had.has(day)) continue;
      const label = dayLabel(day);
      this.enqueue(
        () => this.d.audit({ kind: 'hard_day', scope, at: this.d.now(), actor: 'forge', reason: `a hard-stop condition held on ${label}`, details: { day: label }, eventId: `hard_day:${scope}:${label}` }),
        'audit hard day',
        'audit',
      );
    }
  }

  /**
   * Publishes the scope's control state as it is now (seq already bumped by the caller). Compare-and-set
   * on the bus: a stale publish means another process changed the scope first; then its state is adopted
   * and nothing is announced or audited here.
   */
  private announce(scope: ScopeKey, kind: ChangeKind, previous: GuardState, holds: ConditionHit[], weekMicros: Micros, reason: string, actor?: string): Promise<PublishResult> {
    const s = this.stateOf(scope);
    const held = holds.filter((h) => !isWaivedHit(s.guard, h));
    const why = kind === 'transition' && held.length > 0 ? `${reason}: ${held.map((h) => h.id).join(', ')}` : reason;
    const budget = this.ownBudget(scope);
    const change: StateChange = {
      scope,
      state: s.guard.state,
      previous,
      seq: s.guard.seq,
      at: kind === 'transition' ? s.guard.since : this.d.now(),
      reason: why,
      holds,
      weekMicros,
      ...(actor ? { actor } : {}),
      kind,
      control: { guard: s.guard, ...(budget ? { budget } : {}) },
    };
    const generation = this.generation.get(scope) ?? 0;
    const record: AuditRecord = {
      kind: AUDIT_KIND[kind],
      scope,
      at: change.at,
      actor: actor ?? 'forge',
      reason: change.reason,
      state: change.state,
      previous,
      seq: change.seq,
      details: { holds, control: change.control },
      eventId: `${scope}#${change.seq}`,
    };
    const tell = (): void => {
      if (kind === 'transition' || change.state !== change.previous) {
        try {
          this.d.onChange(change);
        } catch (e) {
          this.d.onError(e, 'state change listener');
        }
      }
      this.enqueue(() => this.d.audit(record), 'audit state change', 'audit');
    };
    return new Promise<PublishResult>((resolve) => {
      this.enqueue(async () => {
        // Built on a state another process has since replaced (a lost race): superseded; whatever it
        // still implies is re-derived on top of the adopted state.
        if ((this.generation.get(scope) ?? 0) !== generation) return resolve('superseded');
        let outcome: 'published' | 'stale';
        try {
          outcome = await this.d.bus.publish(change);
        } catch (e) {
          // The bus is unreachable: this process's state is the truth it has; people are told and the
          // change is audited now, and the scope's state is published when the bus answers again.
          this.unpublished.add(scope);
          tell();
          this.d.onError(e, 'publish state change (will publish again when the bus answers)');
          return resolve('failed');
        }
        if (outcome === 'stale') {
          const cur = await this.d.bus.current(scope).catch(() => undefined);
          if (cur) this.adopt(cur, true);
          if (kind === 'transition') this.reevaluate(scope, 'after another process changed the scope');
          return resolve('stale');
        }
        tell();
        resolve('published');
      }, 'publish state change', 'bus');
    });
  }

  /** Re-derives a scope's state at now on top of what it holds (after adopting another process's change). */
  private reevaluate(scope: ScopeKey, reason: string): void {
    const s = this.scopes.get(scope);
    if (!s) return;
    const r = evaluateAt(this.bandsFor(scope), s, this.d.now());
    if (r.change) this.apply(scope, r, reason);
    else this.scopes.set(scope, r.state);
  }

  /** Publishes again the scopes whose changes the bus did not take (it was unreachable). Timer-driven. */
  async republish(): Promise<void> {
    if (this.d.sharedSpend && this.pendingShared.length > 0) await this.flushPendingShared(this.d.sharedSpend);
    for (const scope of [...this.unpublished]) {
      const g = this.scopes.guard(scope);
      if (!g) {
        this.unpublished.delete(scope);
        continue;
      }
      const budget = this.ownBudget(scope);
      const change: StateChange = { scope, state: g.state, previous: g.state, seq: g.seq, at: g.since, reason: 'published again after the bus was unreachable', holds: this.scopes.holds(scope), weekMicros: 0, kind: 'transition', control: { guard: g, ...(budget ? { budget } : {}) } };
      const outcome = await this.d.bus.publish(change); // throws while the bus is still away: tried again
      this.unpublished.delete(scope);
      if (outcome === 'stale') {
        const cur = await this.d.bus.current(scope);
        if (cur) this.adopt(cur, true);
        this.reevaluate(scope, 'after another process changed the scope');
      }
    }
  }

  /**
   * Takes another process's (or an earlier life's) control state of a scope: its guard status and budget
   * version. Only a newer seq, unless forced: our own publish lost the compare-and-set, so the bus's state
   * replaces ours whatever its seq, and what we had queued on the old base is superseded.
   */
  adopt(c: StateChange, force: boolean): void {
    const mine = this.scopes.guard(c.scope);
    if (!force && mine && c.seq <= mine.seq) return;
    const guard = guardOfChange(c);
    this.scopes.setGuard(this.scopeNumber(c.scope), guard);
    if (force) {
      this.generation.set(c.scope, (this.generation.get(c.scope) ?? 0) + 1);
      // Every change carries the newest budget version: the bus's state says which one is in force.
      const kept = (this.budgets.get(c.scope)?.versions ?? []).filter((v) => c.control?.budget !== undefined && v.version < c.control.budget.version);
      if (kept.length === 0) this.budgets.delete(c.scope);
      else this.budgets.set(c.scope, { versions: kept, thresholds: thresholdsOf(kept[kept.length - 1]!.bands) });
      this.budgetsEpoch++;
    }
    if (c.control?.budget) this.putBudget(c.scope, c.control.budget);
    if (guard.acknowledged && !mine?.acknowledged && c.actor) {
      try {
        this.d.onAcknowledge?.(c.scope, c.actor);
      } catch (e) {
        this.d.onError(e, 'acknowledge listener');
      }
    }
  }

  /** Serialises background I/O within its lane, so writes keep their order; never rejects. */
  private enqueue(fn: () => Promise<void>, where: string, lane: keyof Guardrail['lanes']): void {
    this.lanes[lane] = this.lanes[lane].then(fn).catch((e: unknown) => this.d.onError(e, where));
  }

  /** Waits for background writes, including those they queue (tests, shutdown). */
  async drain(): Promise<void> {
    for (;;) {
      const { bus, ledger, audit } = this.lanes;
      await Promise.all([bus, ledger, audit]);
      if (bus === this.lanes.bus && ledger === this.lanes.ledger && audit === this.lanes.audit) return;
    }
  }

  /** The state of a scope (shared: the newest any process published, adopted here). */
  effectiveState(scope: ScopeKey): GuardState {
    return this.scopes.guard(scope)?.state ?? 'NORMAL';
  }

  /** Guardrail view of a scope, from memory (plus the ledger's open reservations). */
  async view(scope: ScopeKey) {
    const now = this.d.now();
    if (this.d.sharedSpend) {
      try {
        const days = Array.from({ length: 8 }, (_, i) => dayOf(now) - i);
        const snap = (await this.d.sharedSpend.read([scope], days)).get(scope);
        if (snap && snap.run.tasks > 0) this.takeShared(scope, snap);
      } catch (e) {
        this.d.onError(e, 'shared spend');
      }
    }
    const b = this.bandsFor(scope);
    const s = this.stateOf(scope);
    const r = evaluateAt(b, s, now);
    if (r.change) this.apply(scope, r, 'clock');
    else this.scopes.set(scope, r.state);
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
        waived: isWaivedHit(g, h),
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
  private capsFor(scope: ScopeKey, b: Thresholds = this.bandsFor(scope)): ScopeCaps {
    const g = this.scopes.guard(scope);
    if (!g || (g.waived.length === 0 && (g.dayWaivers === undefined || g.dayWaivers.length === 0))) {
      // No waiver: the bands' own caps (the same object for as long as these bands are in force).
      let caps = this.plainCaps.get(b);
      if (!caps) {
        caps = Object.freeze({ dayHard: b.dayHard, weekHard: b.weekHard, runCap: b.runCap });
        this.plainCaps.set(b, caps);
      }
      return caps;
    }
    // The waivers in force now (a day condition's waiver ends with its UTC day).
    const waived = waivedAt(g, this.d.now());
    const NO_CAP = Number.MAX_SAFE_INTEGER;
    return Object.freeze({
      dayHard: waived.includes('day_hard') ? b.dayEmergency : b.dayHard,
      weekHard: waived.includes('week_hard') ? NO_CAP : b.weekHard,
      runCap: waived.includes('run_cap') ? NO_CAP : b.runCap,
    });
  }

  /**
   * Reserve, then settle: deny when a scope is halted or a hard cap has no headroom. The amount reserved is
   * what the task can cost (its priced bounds) when the runner sends them; else the runner's estimate,
   * scaled by what this task type's history says of such estimates; else a high quantile of the task
   * type's actual costs; else the unit cap. Never zero.
   */
  /** The tenants' intake gate (set once it is built, after the control state is rebuilt). */
  useIntake(gate: IntakePort): void {
    this.intake = gate;
  }

  async admit(req: { tenantId: string; runId: string; taskType: string; estimatedMicros?: Micros; estimateSource?: 'runner' | 'bounds' }): Promise<AdmissionDecision> {
    // A reservation holds at least the ledger's unit (one micro-dollar): a smaller estimate holds nothing.
    if (req.estimatedMicros !== undefined && !(req.estimatedMicros >= 1)) throw new GuardError('FORGE_ERR_VALIDATION', 'estimated_cost_usd must be at least 0.000001 USD (one micro-dollar, the ledger\'s unit)', { field: 'estimated_cost_usd' });
    const now = this.d.now();
    const run = this.admittedRun(req.tenantId, req.runId);
    const scopes = run.scopes;
    const paused = this.intake?.paused(req.tenantId);
    if (paused) {
      const scope = scopes[1]!;
      return { decision: 'deny', state: 'HARD_STOP', scope, reason: `the intake of ${scope} is paused (${paused.reason}); tasks in flight go on; an operator resumes it`, retryAfterMs: null, intakePaused: { since: paused.since, reason: paused.reason } };
    }
    const halted = this.haltedDenial(scopes);
    if (halted) return halted;
    let estimateSource: EstimateSource;
    let estimate: Micros;
    let learnedFactor: number | undefined;
    if (req.estimatedMicros !== undefined && req.estimateSource === 'bounds') {
      estimate = req.estimatedMicros;
      estimateSource = 'bounds';
    } else if (req.estimatedMicros !== undefined) {
      const scaled = this.learned.scale(req.tenantId, req.taskType, req.estimatedMicros);
      estimate = scaled.micros;
      estimateSource = scaled.factorPpm === undefined ? 'runner' : 'runner_learned';
      if (scaled.factorPpm !== undefined) learnedFactor = scaled.factorPpm / 1_000_000;
    } else {
      const q = this.learned.costQuantile(req.tenantId, req.taskType);
      if (q !== undefined && q > 0) {
        estimate = q;
        estimateSource = 'learned_p99';
      } else {
        estimate = this.bandsOfRun(run)[2].unitCap;
        estimateSource = 'unit_cap';
      }
    }
    const reservationId = reservationIdFor(req.tenantId, req.runId);
    const serial = lastReservationSerial();
    let out: Awaited<ReturnType<LiveLedger['reserve']>>;
    try {
      const input = { reservationId, scopes: this.reserveScopes(run), amountMicros: Math.max(estimate, 1), now, ttlMs: this.d.reservationTtlMs };
      // A ledger in this process answers at once: no promise to wait for on the hot path.
      const ledger = this.d.ledger;
      out = ledger.reserveNow ? ledger.reserveNow(input) : await ledger.reserve(input);
    } catch (e) {
      if (this.d.onLedgerFailure !== 'open' || !isLedgerUnavailable(e)) throw e;
      // Fail open (configured): no reservation is held; the task's event still counts when it arrives.
      // Reported once per outage, not once per admission.
      if (!this.ledgerDown) this.d.onError(e, `admissions allowed unreserved from now until the ledger answers again (FORGE_ADMISSIONS_ON_LEDGER_FAILURE=open); first: ${scopes[2]}`);
      this.ledgerDown = true;
      this.intake?.admitted(req.tenantId);
      return { decision: 'allow', reservationId, expiresAt: now + this.d.reservationTtlMs, estimatedMicros: estimate, estimateSource, unreserved: true };
    }
    this.ledgerDown = false;
    if (out.ok) {
      // The newest 100,000 are kept (a slot is written again 100,000 admissions later): past that, a
      // settle only loses its learning sample.
      this.openHere.set(reservationId, serial, req.taskType, req.estimateSource !== 'bounds' ? req.estimatedMicros : undefined);
      this.intake?.admitted(req.tenantId);
      const allow: AdmissionDecision = { decision: 'allow', reservationId, expiresAt: out.expiresAt, estimatedMicros: estimate, estimateSource };
      if (learnedFactor !== undefined) allow.learnedFactor = learnedFactor;
      return allow;
    }
    const { spent, reason, retryAfterMs } = refusalOf(out, now);
    return { decision: 'deny', state: spent ? 'HARD_STOP' : this.effectiveState(out.scope), scope: out.scope, reason, retryAfterMs };
  }

  /** The denial of a task whose scopes include a halted one (admissions and top-ups alike). */
  private haltedDenial(scopes: readonly ScopeKey[]): { decision: 'deny'; state: GuardState; scope: ScopeKey; reason: string; retryAfterMs: null } | undefined {
    for (const scope of scopes) {
      const st = this.effectiveState(scope);
      if (isHalted(st)) return { decision: 'deny', state: st, scope, reason: `${scope} is in ${st}; an operator must lift it`, retryAfterMs: null };
    }
    return undefined;
  }

  /**
   * A run's scopes, as one entry per tenant and run admitted recently: an admission names the same few
   * runs again and again, so their scope keys and the list a reservation names are built once, not per
   * admission (bounded: past MAX_RUNS the entries are dropped and built again).
   */
  private admittedRun(tenantId: string, runId: string): AdmittedRun {
    const key = `${tenantId}\u0000${runId}`;
    let run = this.runs.get(key);
    if (!run) {
      if (this.runs.size >= MAX_RUNS) this.runs.clear();
      run = { scopes: scopesOf(tenantId, runId), bands: undefined, bandsEpoch: -1, reserve: undefined };
      this.runs.set(key, run);
    }
    return run;
  }

  /** The bands of a run's three scopes (as `bandsFor`), kept until a budget changes anywhere. */
  private bandsOfRun(run: AdmittedRun): readonly [Thresholds, Thresholds, Thresholds] {
    if (run.bands === undefined || run.bandsEpoch !== this.budgetsEpoch) {
      run.bands = [this.bandsFor(run.scopes[0]), this.bandsFor(run.scopes[1]), this.bandsFor(run.scopes[2])];
      run.bandsEpoch = this.budgetsEpoch;
    }
    return run.bands;
  }

  /** What a reservation of the run names: each scope with its caps now (the same list while the caps are). */
  private reserveScopes(run: AdmittedRun): ReserveScopes {
    const b = this.bandsOfRun(run);
    const s = run.scopes;
    const c0 = this.capsFor(s[0], b[0]);
    const c1 = this.capsFor(s[1], b[1]);
    const c2 = this.capsFor(s[2], b[2]);
    const r = run.reserve;
    if (r && r[0].caps === c0 && r[1].caps === c1 && r[2].caps === c2) return r;
    // Frozen all the way down: the ledger checks a list once, not on every admission that names it.
    run.reserve = Object.freeze([Object.freeze({ scope: s[0], caps: c0 }), Object.freeze({ scope: s[1], caps: c1 }), Object.freeze({ scope: s[2], caps: c2 })] as const);
    return run.reserve;
  }

  /**
   * A top-up during a task: more reserved on the same reservation, under the same rule (refused at the
   * cap). A task that needs more than it reserved asks here before spending it.
   */
  async extend(reservationId: string, amountMicros: Micros): Promise<ExtendDecision> {
    const who = scopesOfReservation(reservationId);
    if (!who) throw new GuardError('FORGE_ERR_NOT_FOUND', 'reservation not found', { field: 'id' });
    if (!(amountMicros >= 1)) throw new GuardError('FORGE_ERR_VALIDATION', 'additional_usd must be at least 0.000001 USD', { field: 'additional_usd' });
    const now = this.d.now();
    const scopes = scopesOf(who.tenantId, who.runId);
    const halted = this.haltedDenial(scopes);
    if (halted) return halted;
    const out = await this.d.ledger.extend({ reservationId, scopes: scopes.map((scope) => ({ scope, caps: this.capsFor(scope) })), amountMicros, now });
    if (out.ok) return { decision: 'allow', reservedMicros: out.reservedMicros, expiresAt: out.expiresAt };
    if (out.unknown) throw new GuardError('FORGE_ERR_NOT_FOUND', 'reservation not found (settled or expired)', { field: 'id' });
    const { spent, reason, retryAfterMs } = refusalOf(out, now);
    return { decision: 'deny', state: spent ? 'HARD_STOP' : this.effectiveState(out.scope), scope: out.scope, reason, retryAfterMs };
  }

  /**
   * Settles a reservation with the task's actual cost. The settle moves the live state at once (a scope
   * crosses its band on the settle that crosses it; the task's cost event, when it arrives with the same
   * event id, is not counted again). A settle above what the reservation held is booked, flagged
   * (an `overrun` in guardrail_events) and re-evaluated like any spend; the runner's estimate and the
   * actual cost teach the task type's ratio.
   */
  async settle(reservationId: string, actual: { eventId: string; amountMicros: Micros; eventTime: number }): Promise<SettleResult> {
    const who = scopesOfReservation(reservationId);
    if (!who) throw new GuardError('FORGE_ERR_NOT_FOUND', 'reservation not found', { field: 'id' });
    const scopes = scopesOf(who.tenantId, who.runId);
    const r = await this.d.ledger.settleDetailed(reservationId, { ...actual, scopes });
    const mine = this.openHere.take(reservationId);
    const overrun = r.status === 'settled' && actual.amountMicros > r.reservedMicros;
    if (mine?.runnerMicros !== undefined && r.status === 'settled') this.learned.noteRatio(who.tenantId, mine.taskType, mine.runnerMicros, actual.amountMicros);
    if (overrun) {
      this.enqueue(
        () =>
          this.d.audit({
            kind: 'overrun',
            scope: scopes[2],
            at: this.d.now(),
            actor: 'forge',
            reason: `settled ${microsToUsd(actual.amountMicros)} USD on a reservation of ${microsToUsd(r.reservedMicros)} USD without a top-up`,
            details: { reservation_id: reservationId, event_id: actual.eventId, reserved_usd: microsToUsd(r.reservedMicros), actual_usd: microsToUsd(actual.amountMicros) },
            eventId: `overrun:${reservationId}`,
          }),
        'audit overrun',
        'audit',
      );
    }
    // Only a settle of an open reservation moves the live state: an 'unknown' one (settled before, expired,
    // or a retry after a restart) may already be in the totals rebuilt from the log; its event counts then.
    if (r.status === 'settled' && actual.amountMicros > 0) {
      await this.ingest([
        {
          eventId: actual.eventId,
          tenantId: who.tenantId,
          runId: who.runId,
          taskId: actual.eventId,
          taskType: mine?.taskType ?? 'settled',
          eventTime: actual.eventTime,
          status: 'success',
          // A settle carries the total only: it is booked as compute until the task's event (same id) says more.
          rliMicros: 0,
          gasMicros: 0,
          computeMicros: actual.amountMicros,
          storageMicros: 0,
          llmMicros: 0,
          totalMicros: actual.amountMicros,
        },
      ]);
    }
    return { status: r.status, reservedMicros: r.reservedMicros, overrun };
  }

  /** Writes what was learned of estimates since the last call (guardrail_events), so a restart keeps it. */
  async persistLearned(): Promise<number> {
    const changed = this.learned.takeChanged();
    const at = this.d.now();
    for (const c of changed) {
      await this.d.audit({
        kind: 'estimate_learned',
        scope: `tenant:${c.tenantId}`,
        at,
        actor: 'forge',
        reason: `actual / estimate ratios of task type ${c.taskType}`,
        details: { task_type: c.taskType, ratios_ppm: c.ratiosPpm },
        eventId: `estimate:${c.tenantId}:${c.taskType}:${at}`,
      });
    }
    return changed.length;
  }

  /** Releases expired reservations and logs each; returns how many. */
  async expireReservations(): Promise<number> {
    const expired = await this.d.ledger.expire(this.d.now());
    for (const x of expired) {
      await this.d.audit({ kind: 'reservation_expired', scope: x.scopes[x.scopes.length - 1] ?? 'global', at: this.d.now(), actor: 'forge', reason: `reservation ${x.reservationId} of ${microsToUsd(x.amountMicros)} USD expired unsettled and was released`, details: x, eventId: `expired:${x.reservationId}` });
    }
    return expired.length;
  }

  /**
   * An operator acknowledges a WARNING. Answered once the bus took it (or, with the bus unreachable, once
   * it is audited here); when another process changed the scope first, the acknowledgement is made again
   * on its state, or refused if there is no warning left to acknowledge.
   */
  async acknowledge(scope: ScopeKey, actor: string, reason: string): Promise<{ state: GuardState }> {
    for (let attempt = 0; ; attempt++) {
      const s = this.stateOf(scope);
      const r = acknowledgeWarning(this.bandsFor(scope), s, this.d.now());
      if (!r.ok) {
        // Lost the race to another process that already cleared the warning: nothing left to do.
        if (attempt > 0) return { state: s.guard.state };
        throw new GuardError('FORGE_ERR_CONFLICT', `${scope} is in ${s.guard.state}, not WARNING: nothing to acknowledge`, { field: 'scope' });
      }
      // Every acknowledgement is a published change (seq + 1), so other processes and a restart keep it.
      const next: ScopeState = r.change ? r.state : { ...r.state, guard: { ...r.state.guard, seq: r.state.guard.seq + 1 } };
      this.scopes.set(scope, next);
      const out = await this.announce(scope, 'acknowledgement', s.guard.state, this.scopes.holds(scope), 0, `acknowledged by ${actor}: ${reason}`, actor);
      if (out === 'published' || out === 'failed' || attempt >= 4) {
        try {
          this.d.onAcknowledge?.(scope, actor);
        } catch (e) {
          this.d.onError(e, 'acknowledge listener');
        }
        return { state: this.stateOf(scope).guard.state };
      }
    }
  }

  /** An operator lifts a stop; like acknowledge, made again on another process's newer state if it lost the race. */
  async lift(scope: ScopeKey, actor: string, reason: string): Promise<{ state: GuardState; waived: string[] }> {
    for (let attempt = 0; ; attempt++) {
      const s = this.stateOf(scope);
      const b = this.bandsFor(scope);
      const now = this.d.now();
      const r = liftStop(b, s, now);
      if (!r.ok) {
        // Lost the race to another process that lifted it already: the intent holds.
        if (attempt > 0) return { state: s.guard.state, waived: [...s.guard.waived] };
        throw new GuardError('FORGE_ERR_CONFLICT', `${scope} is in ${s.guard.state}: there is no stop to lift`, { field: 'scope' });
      }
      this.scopes.set(scope, r.state);
      const ev = evaluateAt(b, r.state, now);
      const out = await this.announce(scope, 'lift', r.change!.from, ev.holds, ev.totals.weekMicros, `lifted by ${actor}: ${reason}`, actor);
      if (out === 'published' || out === 'failed' || attempt >= 4) {
        const g = this.stateOf(scope).guard;
        return { state: g.state, waived: [...g.waived] };
      }
    }
  }

  /** The hourly recompute: replace a scope's live totals with the event log's and re-evaluate. */
  rebase(scope: ScopeKey, fromLog: LogSpend): void {
    this.apply(scope, evaluateRollup(this.bandsFor(scope), this.stateOf(scope), fromLog, this.d.now()), 'hourly recompute');
  }

  /**
   * Start-up: seeds a scope's control state rebuilt from guardrail_events (and the bus's durable copy),
   * before its spend is rebuilt from the event log. Nothing is announced.
   */
  seed(scope: ScopeKey, control: { guard?: GuardStatus; budgets?: readonly BudgetVersion[]; hardDays?: readonly number[]; consecutiveAtCap?: number }): void {
    for (const v of [...(control.budgets ?? [])].sort((a, b) => a.version - b.version)) this.putBudget(scope, v);
    const s = this.stateOf(scope);
    const guard = control.guard && control.guard.seq >= s.guard.seq ? control.guard : s.guard;
    const hardDays = control.hardDays ? [...new Set([...s.spend.hardDays, ...control.hardDays])].sort((a, b) => a - b) : s.spend.hardDays;
    this.scopes.set(scope, { guard, spend: { ...s.spend, hardDays, consecutiveAtCap: control.consecutiveAtCap ?? s.spend.consecutiveAtCap } });
  }

  /** Day, week and run totals of a scope now (components are the day's), USD micros, for metrics. */
  totals(scope: ScopeKey): { dayMicros: Micros; weekMicros: Micros; runMicros: Micros; components: SpendTotals['dayComponents'] } {
    const t = totalsOf(this.stateOf(scope).spend, this.d.now());
    return { dayMicros: t.dayMicros, weekMicros: t.weekMicros, runMicros: t.runMicros, components: t.dayComponents };
  }

  knownScopes(): ScopeKey[] {
    return this.scopes.keys();
  }
}

export function usdToMicrosField(v: string | number, field: string): Micros {
  try {
    const m = usdToMicros(v);
    if (m < 0) throw new Error('negative');
    return m;
  } catch {
    throw new GuardError('FORGE_ERR_VALIDATION', `${field} must be a non-negative USD amount`, { field });
  }
}
