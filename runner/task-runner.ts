import { createHash } from 'node:crypto';
import {
  Dec,
  usdToMicros,
  GLOBAL_SCOPE,
  isHalted,
  microsToUsd,
  operationCost,
  scopesOf,
  stateRank,
  type GuardState,
  type ScopeKey,
  type StateChange,
} from '../rules/index.ts';
import type { AdmissionClient } from './admission.ts';
import { defaultErrorHandler, type ErrorHandler } from './errors.ts';
import type { EventEmitterClient, TaskFinalizedEvent } from './events.ts';
import { ChildProcessExecutor, type ExecResult, type Executor, type TaskReport } from './executor.ts';
import type { HaltBus } from '../guard/index.ts';
import type { Postponed, Pricing, TaskEndReason, TaskOutcome, TaskSpec } from './types.ts';

/** The queue side of a runner: stops and restarts taking jobs. */
export interface IntakeControl {
  pause(): void | Promise<void>;
  resume(): void | Promise<void>;
}

export interface HungTask {
  task: TaskSpec;
  /** ms since the last heartbeat. */
  silentMs: number;
  timeoutMs: number;
  at: number;
}

/** What a task may cost in flight before it is an anomaly (guard's learned normal x 3, or the unit cap x 3). */
export interface CostCeiling {
  /** USD micros. */
  ceilingMicros: number;
  normalMicros: number;
  source: string;
}

/** A task killed for costing past its ceiling while running. */
export interface CostAnomaly {
  task: TaskSpec;
  costSoFarMicros: number;
  ceiling: CostCeiling;
  at: number;
}

export interface TaskRunnerOptions {
  bus: HaltBus;
  admission: AdmissionClient;
  events: EventEmitterClient;
  /** Default: ChildProcessExecutor. */
  executor?: Executor;
  /** Prices for the estimate and the settle amount; a function prices per task (e.g. by environment). */
  pricing: Pricing | ((task: TaskSpec) => Pricing);
  /** `environment` of the cost events. Default 'forge-runner'. */
  environment?: string;
  /**
   * Scopes whose halt pauses this runner's whole intake (global always). A runner dedicated to one
   * tenant or run lists them; a shared runner leaves them out and postpones halted scopes' tasks only.
   */
  intakeScopes?: readonly ScopeKey[];
  /** Default heartbeat timeout of a task, ms. Default 60,000. */
  heartbeatTimeoutMs?: number;
  /** Delay before a postponed task is tried again, ms (halted, denied without retry-after, unavailable). Default 1000. */
  retryDelayMs?: number;
  /** Upper bound of a postponement, ms. Default 60,000. */
  maxRetryDelayMs?: number;
  /** Attempts to emit the event and to settle (idempotent, so retried). Default 3. */
  deliveryAttempts?: number;
  onError?: ErrorHandler;
  /** A task went silent past its timeout; it is being killed. For alerts. */
  onHung?(h: HungTask): void;
  /** The task's in-flight cost ceiling, read before it starts; undefined (or a failure): no ceiling. */
  costCeiling?(task: TaskSpec): Promise<CostCeiling | undefined>;
  /** A task passed its cost ceiling while running; it is being killed. For the audit and alerts. */
  onAnomaly?(a: CostAnomaly): void;
  /** A task in flight is being aborted (hung, emergency stop, anomaly): for the kill counts. */
  onKill?(task: TaskSpec, kind: 'hung' | 'emergency' | 'anomaly'): void;
  onTaskStart?(task: TaskSpec): void;
  onTaskEnd?(o: TaskOutcome): void;
  onPostponed?(p: Postponed): void;
  /** Intake stopped (open=false) or resumed, with the change that caused it. */
  onIntake?(open: boolean, cause: StateChange | undefined): void;
  /** A run was terminated by an EMERGENCY_STOP; its queued tasks will not start in this runner. */
  onRunTerminated?(runScope: ScopeKey, change: StateChange): void;
  now?: () => number;
}

export type HandleResult = { kind: 'done'; outcome: TaskOutcome } | { kind: 'postpone'; postponed: Postponed } | { kind: 'drop'; postponed: Postponed };

interface InFlight {
  task: TaskSpec;
  scopes: ScopeKey[];
  ac: AbortController;
  lastBeat: number;
  abortKind?: 'emergency' | 'hung' | 'shutdown' | 'anomaly';
  abortDetail?: string;
}

/**
 * The runner's core, independent of the queue: for each task it reads the durable halt state of the
 * task's scopes (a runner that missed a push still stops), asks for admission, runs the task with an
 * AbortSignal and a heartbeat watchdog, emits the cost event and settles. It follows the halt bus:
 * HARD_STOP pauses intake (in-flight tasks finish), EMERGENCY_STOP also aborts the tasks in flight and
 * terminates their runs, a lift resumes intake.
 */
export class TaskRunner {
  private readonly states = new Map<ScopeKey, StateChange>();
  private readonly inflight = new Set<InFlight>();
  private readonly terminated = new Set<ScopeKey>();
  private readonly intakeScopes: Set<ScopeKey>;
  private readonly executor: Executor;
  private readonly onError: ErrorHandler;
  private readonly now: () => number;
  private control: IntakeControl | undefined;
  private unsubscribe: (() => void) | undefined;
  private open = true;
  private closed = false;

  constructor(private readonly o: TaskRunnerOptions) {
    this.executor = o.executor ?? new ChildProcessExecutor();
    this.onError = o.onError ?? defaultErrorHandler;
    this.now = o.now ?? Date.now;
    this.intakeScopes = new Set([GLOBAL_SCOPE, ...(o.intakeScopes ?? [])]);
  }

  /** Subscribes to the bus and reads the durable state of the intake scopes. */
  async start(control?: IntakeControl): Promise<void> {
    if (control) this.control = control;
    this.unsubscribe ??= this.o.bus.subscribe((c) => this.apply(c));
    await this.o.bus.ready();
    await this.refresh([...this.intakeScopes]).catch((e: unknown) => this.onError(e, 'runner start: halt state'));
  }

  attach(control: IntakeControl): void {
    this.control = control;
    if (!this.open) void this.callControl('pause');
  }

  /** Whether intake is open (no halt on the intake scopes). */
  get intakeOpen(): boolean {
    return this.open;
  }

  get inFlightCount(): number {
    return this.inflight.size;
  }

  /** The last known state of a scope (push or durable read). */
  stateOf(scope: ScopeKey): GuardState {
    return this.states.get(scope)?.state ?? 'NORMAL';
  }

  isTerminated(tenantId: string, runId: string): boolean {
    return this.terminated.has(scopesOf(tenantId, runId)[2]);
  }

  /** Feeds a state change (from the bus, or a durable read). Stale ones are ignored. */
  apply(c: StateChange): void {
    const prev = this.states.get(c.scope);
    if (prev && prev.seq >= c.seq) return;
    this.states.set(c.scope, c);
    if (c.state === 'EMERGENCY_STOP') this.emergency(c);
    this.recomputeIntake(c);
  }

  private emergency(c: StateChange): void {
    const runs = new Set<ScopeKey>();
    if (c.scope.startsWith('run:')) runs.add(c.scope);
    for (const f of this.inflight) {
      if (!f.scopes.includes(c.scope)) continue;
      runs.add(f.scopes[2]!);
      if (!f.ac.signal.aborted) {
        f.abortKind = 'emergency';
        f.abortDetail = `EMERGENCY_STOP on ${c.scope}: ${c.reason}`;
        this.killed(f.task, 'emergency');
        f.ac.abort(new Error(f.abortDetail));
      }
    }
    for (const r of runs) {
      if (this.terminated.has(r)) continue;
      this.terminated.add(r);
      try {
        this.o.onRunTerminated?.(r, c);
      } catch (e) {
        this.onError(e, 'onRunTerminated');
      }
    }
  }

  private killed(task: TaskSpec, kind: 'hung' | 'emergency' | 'anomaly'): void {
    this.hook('onKill', () => this.o.onKill?.(task, kind));
  }

  /** Runs a caller's hook; what it throws goes to onError, never into the task's path. */
  private hook(name: string, fn: () => void): void {
    try {
      fn();
    } catch (e) {
      this.onError(e, name);
    }
  }

  private recomputeIntake(cause: StateChange | undefined): void {
    const halted = [...this.intakeScopes].some((s) => isHalted(this.stateOf(s)));
    if (halted === !this.open) return;
    this.open = !halted;
    void this.callControl(halted ? 'pause' : 'resume');
    try {
      this.o.onIntake?.(this.open, cause);
    } catch (e) {
      this.onError(e, 'onIntake');
    }
  }

  private async callControl(what: 'pause' | 'resume'): Promise<void> {
    try {
      await this.control?.[what]();
    } catch (e) {
      this.onError(e, `intake ${what}`);
    }
  }

  private async refresh(scopes: readonly ScopeKey[]): Promise<void> {
    const cs = await Promise.all(scopes.map((s) => this.o.bus.current(s)));
    for (const c of cs) if (c) this.apply(c);
  }

  /** The most severe halted scope among these, if any. */
  private haltedAmong(scopes: readonly ScopeKey[]): StateChange | undefined {
    let worst: StateChange | undefined;
    for (const s of scopes) {
      const c = this.states.get(s);
      if (c && isHalted(c.state) && (!worst || stateRank(c.state) > stateRank(worst.state))) worst = c;
    }
    return worst;
  }

  private retryDelay(ms: number | null | undefined): number {
    const max = this.o.maxRetryDelayMs ?? 60_000;
    return Math.min(max, Math.max(1, ms ?? this.o.retryDelayMs ?? 1000));
  }

  private postponed(task: TaskSpec, p: Omit<Postponed, 'taskId' | 'tenantId' | 'runId'>, kind: 'postpone' | 'drop' = 'postpone'): HandleResult {
    const postponed: Postponed = { taskId: task.taskId, tenantId: task.tenantId, runId: task.runId, ...p };
    try {
      this.o.onPostponed?.(postponed);
    } catch (e) {
      this.onError(e, 'onPostponed');
    }
    return { kind, postponed };
  }

  /**
   * Handles one task pulled from a queue: 'done' (it ran; success or failure is in the outcome),
   * 'postpone' (try again after retryAfterMs) or 'drop' (its run was terminated).
   */
  async handle(task: TaskSpec, attempt = 1): Promise<HandleResult> {
    const scopes = scopesOf(task.tenantId, task.runId);
    const runKey = scopes[2];
    const dropped = (): HandleResult =>
      this.postponed(task, { cause: 'run_terminated', scope: runKey, state: 'EMERGENCY_STOP', reason: `${runKey} was terminated by an EMERGENCY_STOP`, retryAfterMs: 0 }, 'drop');
    if (this.terminated.has(runKey)) return dropped();

    // 1. The durable state, read before every task: a runner that missed a push still stops.
    try {
      await this.refresh(scopes);
    } catch (e) {
      this.onError(e, 'halt state read');
      return this.postponed(task, { cause: 'halt_state_unavailable', reason: (e as Error).message, retryAfterMs: this.retryDelay(undefined) });
    }
    if (this.terminated.has(runKey)) return dropped();
    const halt = this.haltedAmong(scopes);
    if (halt) return this.postponed(task, { cause: 'halted', scope: halt.scope, state: halt.state, reason: halt.reason, retryAfterMs: this.retryDelay(undefined) });

    // 2. Admission: reserve the estimate. Unreachable = denied (fail closed).
    const estimate = this.estimateUsd(task);
    let reservationId: string;
    try {
      const d = await this.o.admission.admit({ tenantId: task.tenantId, runId: task.runId, taskType: task.taskType, ...(estimate !== undefined ? { estimatedCostUsd: estimate } : {}) });
      if (d.decision === 'deny') {
        return this.postponed(task, { cause: 'denied', state: d.state, ...(d.scope ? { scope: d.scope } : {}), reason: d.reason, retryAfterMs: this.retryDelay(d.retryAfterMs) });
      }
      reservationId = d.reservationId;
    } catch (e) {
      this.onError(e, 'admission');
      const code = (e as { code?: unknown }).code;
      return this.postponed(task, { cause: 'admission_unavailable', ...(typeof code === 'string' ? { code } : {}), reason: (e as Error).message, retryAfterMs: this.retryDelay(undefined) });
    }

    // 3. A push may have arrived while we were asking: memory only, no round trip.
    const eventId = eventIdOf(task, attempt);
    const late = this.haltedAmong(scopes);
    if (late || this.terminated.has(runKey)) {
      await this.deliver('settle (void)', () => this.o.admission.settle(reservationId, { actualCostUsd: '0', eventId: `${eventId}.void`, finalizedAt: this.now() }));
      if (this.terminated.has(runKey)) return dropped();
      return this.postponed(task, { cause: 'halted', scope: late!.scope, state: late!.state, reason: late!.reason, retryAfterMs: this.retryDelay(undefined) });
    }

    return { kind: 'done', outcome: await this.execute(task, scopes, reservationId, eventId) };
  }

  private async execute(task: TaskSpec, scopes: ScopeKey[], reservationId: string, eventId: string): Promise<TaskOutcome> {
    const f: InFlight = { task, scopes, ac: new AbortController(), lastBeat: Date.now() };
    this.inflight.add(f);
    const timeoutMs = task.heartbeatTimeoutMs ?? this.o.heartbeatTimeoutMs ?? 60_000;
    const watchdog = setInterval(
      () => {
        const silent = Date.now() - f.lastBeat;
        if (silent <= timeoutMs || f.ac.signal.aborted) return;
        f.abortKind = 'hung';
        f.abortDetail = `no heartbeat for ${silent} ms (timeout ${timeoutMs} ms)`;
        try {
          this.o.onHung?.({ task, silentMs: silent, timeoutMs, at: this.now() });
        } catch (e) {
          this.onError(e, 'onHung');
        }
        this.killed(task, 'hung');
        f.ac.abort(new Error(f.abortDetail));
      },
      Math.max(10, Math.min(1000, Math.floor(timeoutMs / 4))),
    );
    const startedAt = this.now();
    try {
      this.o.onTaskStart?.(task);
    } catch (e) {
      this.onError(e, 'onTaskStart');
    }
    let ceiling: CostCeiling | undefined;
    try {
      ceiling = await this.o.costCeiling?.(task);
    } catch (e) {
      this.onError(e, 'cost ceiling');
    }
    const progress = (usage: TaskReport): void => {
      if (!ceiling || f.ac.signal.aborted) return;
      const p = this.pricingOf(task);
      const ms = usage.runtimeMs !== undefined && Number.isFinite(usage.runtimeMs) && usage.runtimeMs >= 0 ? usage.runtimeMs : Math.max(0, this.now() - startedAt);
      const hours = new Dec(ms).dividedBy((task.secondsPerHour ?? 3600) * 1000).toDecimalPlaces(6).toString();
      const soFar = priceProfile(task, p, usage, 1, hours).total;
      if (soFar <= ceiling.ceilingMicros) return;
      f.abortKind = 'anomaly';
      f.abortDetail = `cost anomaly: $${microsToUsd(soFar)} in flight passed $${microsToUsd(ceiling.ceilingMicros)} (3 x normal $${microsToUsd(ceiling.normalMicros)}, ${ceiling.source})`;
      this.hook('onAnomaly', () => this.o.onAnomaly?.({ task, costSoFarMicros: soFar, ceiling, at: this.now() }));
      this.killed(task, 'anomaly');
      f.ac.abort(new Error(f.abortDetail));
    };
    let res: ExecResult;
    let reason: TaskEndReason;
    try {
      res = await this.executor.run(task, { signal: f.ac.signal, heartbeat: () => (f.lastBeat = Date.now()), progress });
    } catch (e) {
      res = { ok: false, detail: `executor failed: ${(e as Error).message}` };
    } finally {
      clearInterval(watchdog);
      this.inflight.delete(f);
    }
    if (f.abortKind === 'hung') reason = 'hung';
    else if (f.ac.signal.aborted) reason = 'aborted';
    else if (res.ok) reason = 'completed';
    else if (res.exitCode !== undefined) reason = 'exit_code';
    else reason = 'error';
    const endedAt = this.now();
    const status = reason === 'completed' ? 'success' : 'failed';

    const { event, costMicros } = this.costEvent(task, eventId, status, reason, startedAt, endedAt, res.report);
    const emit = await this.deliver('emit event', () => this.o.events.emit(event));
    const receipt = emit.ok ? emit.value : undefined;
    const settle = await this.deliver('settle', () =>
      this.o.admission.settle(reservationId, { actualCostUsd: microsToUsd(costMicros), eventId, finalizedAt: endedAt }),
    );
    const outcome: TaskOutcome = {
      taskId: task.taskId,
      tenantId: task.tenantId,
      runId: task.runId,
      taskType: task.taskType,
      status,
      reason,
      ...(f.abortDetail ? { detail: f.abortDetail } : res.detail ? { detail: res.detail } : {}),
      eventId,
      reservationId,
      startedAt,
      endedAt,
      costMicros,
      emitted: emit.ok,
      recordedMicros: !emit.ok ? 0 : receipt ? usdToMicros(receipt.totalUsd) : costMicros,
      ...(emit.ok ? {} : { notRecorded: { code: String((emit.error as { code?: unknown }).code ?? 'error'), reason: (emit.error as Error).message ?? String(emit.error) } }),
      settled: settle.ok,
    };
    try {
      this.o.onTaskEnd?.(outcome);
    } catch (e) {
      this.onError(e, 'onTaskEnd');
    }
    return outcome;
  }

  /** Retries an idempotent delivery; reports and returns the error when every attempt failed (a refusal is not retried). */
  private async deliver<T>(what: string, fn: () => Promise<T>): Promise<{ ok: true; value: T } | { ok: false; error: unknown }> {
    const attempts = this.o.deliveryAttempts ?? 3;
    for (let i = 1; ; i++) {
      try {
        return { ok: true, value: await fn() };
      } catch (e) {
        const code = (e as { code?: string }).code;
        if (i >= attempts || code === 'FORGE_ERR_EVENTS_REJECTED' || code === 'FORGE_ERR_API_KEY_REFUSED') {
          this.onError(e, what);
          return { ok: false, error: e };
        }
        await new Promise((r) => setTimeout(r, 100 * 2 ** (i - 1)));
      }
    }
  }

  private pricingOf(task: TaskSpec): Pricing {
    return typeof this.o.pricing === 'function' ? this.o.pricing(task) : this.o.pricing;
  }

  private estimateUsd(task: TaskSpec): string | undefined {
    if (task.estimatedCostUsd !== undefined) return task.estimatedCostUsd;
    if (!task.profile) return undefined;
    return microsToUsd(priceProfile(task, this.pricingOf(task), undefined, 1).total);
  }

  private costEvent(
    task: TaskSpec,
    eventId: string,
    status: 'success' | 'failed',
    reason: TaskEndReason,
    startedAt: number,
    endedAt: number,
    report: TaskReport | undefined,
  ): { event: TaskFinalizedEvent; costMicros: number } {
    const p = this.pricingOf(task);
    const secondsPerHour = task.secondsPerHour ?? 3600;
    const ranMs = report?.runtimeMs !== undefined && Number.isFinite(report.runtimeMs) && report.runtimeMs >= 0 ? report.runtimeMs : Math.max(0, endedAt - startedAt);
    const hours = new Dec(ranMs).dividedBy(secondsPerHour * 1000).toDecimalPlaces(6);
    const expected = task.profile ? new Dec(task.profile.runtimeHours) : undefined;
    // Without a report, an unfinished task is charged tokens pro rata to the time it ran.
    const fraction = status === 'success' || !expected || expected.isZero() ? new Dec(1) : Dec.min(1, hours.dividedBy(expected));
    const cost = priceProfile(task, p, report, fraction, hours.toFixed());
    const used = usageOf(task, report, fraction);
    const event: TaskFinalizedEvent = {
      event_id: eventId,
      tenant_id: task.tenantId,
      run_id: task.runId,
      task_id: task.taskId,
      task_type: task.taskType,
      ...(task.model ? { model: task.model } : {}),
      environment: task.environment ?? this.o.environment ?? 'forge-runner',
      status,
      finalized_at: new Date(endedAt).toISOString(),
      rli_eval_usd: task.profile?.rliEvalUsd ?? '0',
      ...(used.gasUsed > 0 ? { gas: { gas_used: String(used.gasUsed), gas_price_gwei: p.gasPriceGwei, chain_id: p.chainId } } : {}),
      task_hours: hours.toFixed(),
      ...(used.llm.length ? { llm: used.llm.map((l) => ({ model: l.model, input_tokens: l.inputTokens, output_tokens: l.outputTokens })) } : {}),
      reported_end_reason: reason,
      reported_total_usd: microsToUsd(cost.total),
    };
    return { event, costMicros: cost.total };
  }

  /** Stops following the bus; aborts tasks in flight when abort is set (else lets them finish). */
  async close(opts: { abort?: boolean } = {}): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.unsubscribe?.();
    if (opts.abort) {
      for (const f of this.inflight) {
        f.abortKind = 'shutdown';
        f.abortDetail = 'runner shutting down';
        f.ac.abort(new Error(f.abortDetail));
      }
    }
  }
}

function usageOf(task: TaskSpec, report: TaskReport | undefined, fraction: InstanceType<typeof Dec>): { gasUsed: number; llm: NonNullable<TaskReport['llm']> } {
  if (report) return { gasUsed: report.gasUsed ?? 0, llm: report.llm ?? [] };
  const prof = task.profile;
  if (!prof) return { gasUsed: 0, llm: [] };
  // The on-chain submission happens at the end: an unfinished task made none.
  const done = fraction.greaterThanOrEqualTo(1);
  return {
    gasUsed: done ? prof.gasUsed : 0,
    llm: prof.llm.map((l) => ({
      model: l.model,
      inputTokens: fraction.times(l.inputTokens).floor().toNumber(),
      outputTokens: fraction.times(l.outputTokens).floor().toNumber(),
    })),
  };
}

/** Prices a task's profile (or its report) with the runner's pricing: the admission estimate and the settle amount. */
export function priceProfile(task: TaskSpec, p: Pricing, report: TaskReport | undefined, fraction: InstanceType<typeof Dec> | number, hours?: string) {
  const f = new Dec(fraction);
  const used = usageOf(task, report, f);
  return operationCost({
    rliEvalUsd: task.profile?.rliEvalUsd ?? '0',
    gasUsed: used.gasUsed,
    gasPriceGwei: p.gasPriceGwei,
    nativeUsd: p.nativeUsd,
    taskHours: hours ?? task.profile?.runtimeHours ?? '0',
    computeHourUsd: p.computeHourUsd,
    gbStored: 0,
    storageGbMonthUsd: 0,
    expectedTasksDay: 1,
    llm: used.llm,
    llmPrices: p.llm,
  });
}

const EVENT_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** Deterministic per task attempt, so a re-emitted event counts once. */
export function eventIdOf(task: TaskSpec, attempt: number): string {
  const plain = `ev:${task.tenantId}:${task.runId}:${task.taskId}:${attempt}`;
  if (EVENT_ID.test(plain) && plain.length <= 120) return plain;
  return `ev:${createHash('sha256').update(plain).digest('hex').slice(0, 48)}`;
}
