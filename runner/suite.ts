import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { microsToUsd, runScope, tenantScope, type StateChange } from '../rules/index.ts';
import type { AdmissionClient } from './admission.ts';
import { RunnerError, type ErrorHandler } from './errors.ts';
import type { EventEmitterClient } from './events.ts';
import type { Executor } from './executor.ts';
import type { HaltBus } from '../guard/index.ts';
import { InProcessTaskQueue } from './local-queue.ts';
import { TaskRunner, priceProfile, type HungTask } from './task-runner.ts';
import type { Postponed, Pricing, TaskOutcome, TaskSpec } from './types.ts';

/** The simulated agent shipped with the runner (runner/sim-task.mjs). */
export const SIM_TASK_SCRIPT = resolve(dirname(fileURLToPath(import.meta.url)), 'sim-task.mjs');

const decimal = z
  .union([z.string(), z.number()])
  .transform((v) => String(v).trim())
  .refine((s) => /^\d+(\.\d+)?$/.test(s), 'must be a non-negative decimal number');
const wholeNumber = z.number().int('must be a whole number').min(0, 'must not be negative');
const idRe = /^[A-Za-z0-9._-]{1,64}$/;

const taskSchema = z.strictObject({
  id: z.string().regex(idRe, 'must be 1-64 letters, digits, dot, dash or underscore'),
  domain: z.enum(['payer', 'provider'], { error: 'must be payer or provider' }),
  type: z.string().regex(/^[A-Za-z0-9._:/-]{1,64}$/, 'must be 1-64 letters, digits or ._:/-'),
  title: z.string().min(1).max(200),
  model: z.string().min(1).max(128).optional(),
  cost: z.strictObject({
    evaluation_fee_usd: decimal,
    gas_used: wholeNumber,
    runtime_hours: decimal,
    tokens: z.strictObject({ input: wholeNumber, output: wholeNumber }).optional(),
  }),
  /** Simulation knobs: exit code of the simulated agent (default 0). */
  exit_code: z.number().int().min(0).max(255).optional(),
});

const suiteSchema = z.strictObject({
  suite: z.string().regex(idRe, 'must be 1-64 letters, digits, dot, dash or underscore'),
  description: z.string().optional(),
  tenant: z.string().regex(idRe, 'must be 1-64 letters, digits, dot, dash or underscore'),
  run: z.string().regex(/^[A-Za-z0-9._:-]{1,128}$/, 'must be 1-128 letters, digits or ._:-'),
  environment: z.string().regex(/^[A-Za-z0-9._:/@-]{1,128}$/).default('sample'),
  /** Wall-clock seconds per task hour (the simulation's time scale). */
  seconds_per_hour: z.number().positive().max(3600).default(3600),
  heartbeat_timeout_ms: z.number().int().positive().default(30_000),
  pricing: z.strictObject({
    compute_hour_usd: decimal,
    gas_price_gwei: decimal,
    native_usd: decimal,
    chain_id: z.number().int().positive(),
    llm: z.record(z.string(), z.strictObject({ input_per_mtok_usd: decimal, output_per_mtok_usd: decimal })).default({}),
  }),
  tasks: z.array(taskSchema).min(1, 'must list at least one task'),
});

export type SuiteFile = z.output<typeof suiteSchema>;

export interface Suite {
  name: string;
  description: string;
  tenantId: string;
  runId: string;
  pricing: Pricing;
  tasks: TaskSpec[];
  /** Payer / provider, per task id. */
  domains: Record<string, 'payer' | 'provider'>;
}

/** Parses a suite (YAML or JSON text). Errors name the field: "tasks[3].cost.gas_used: must be ...". */
export function parseSuite(text: string, file = 'suite'): Suite {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (e) {
    throw new RunnerError('FORGE_ERR_SUITE_CONFIG', `${file}: not YAML/JSON: ${(e as Error).message}`);
  }
  const r = suiteSchema.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0]!;
    const field = i.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('').replace(/^\./, '') || '(suite)';
    throw new RunnerError('FORGE_ERR_SUITE_CONFIG', `${file}: ${field}: ${i.message}`, { field });
  }
  const s = r.data;
  const seen = new Set<string>();
  for (const [i, t] of s.tasks.entries()) {
    if (seen.has(t.id)) throw new RunnerError('FORGE_ERR_SUITE_CONFIG', `${file}: tasks[${i}].id: repeats ${t.id}`, { field: `tasks[${i}].id` });
    seen.add(t.id);
    if (t.model && t.cost.tokens && !s.pricing.llm[t.model]) {
      throw new RunnerError('FORGE_ERR_SUITE_CONFIG', `${file}: tasks[${i}].model: no price in pricing.llm for "${t.model}"`, { field: `tasks[${i}].model` });
    }
  }
  const pricing: Pricing = {
    computeHourUsd: s.pricing.compute_hour_usd,
    gasPriceGwei: s.pricing.gas_price_gwei,
    nativeUsd: s.pricing.native_usd,
    chainId: s.pricing.chain_id,
    llm: Object.fromEntries(Object.entries(s.pricing.llm).map(([m, p]) => [m, { inputPerMTokUsd: p.input_per_mtok_usd, outputPerMTokUsd: p.output_per_mtok_usd }])),
  };
  const tasks: TaskSpec[] = s.tasks.map((t) => {
    const llm = t.model && t.cost.tokens ? [{ model: t.model, inputTokens: t.cost.tokens.input, outputTokens: t.cost.tokens.output }] : [];
    const durationMs = Math.round(Number(t.cost.runtime_hours) * s.seconds_per_hour * 1000);
    return {
      taskId: t.id,
      tenantId: s.tenant,
      runId: s.run,
      taskType: t.type,
      ...(t.model ? { model: t.model } : {}),
      environment: s.environment,
      profile: { rliEvalUsd: t.cost.evaluation_fee_usd, gasUsed: t.cost.gas_used, runtimeHours: t.cost.runtime_hours, llm },
      secondsPerHour: s.seconds_per_hour,
      heartbeatTimeoutMs: s.heartbeat_timeout_ms,
      command: {
        cmd: 'node',
        args: [SIM_TASK_SCRIPT],
        env: {
          FORGE_SIM_DURATION_MS: String(durationMs),
          FORGE_SIM_HEARTBEAT_MS: String(Math.max(20, Math.min(1000, Math.floor(s.heartbeat_timeout_ms / 5)))),
          FORGE_SIM_EXIT_CODE: String(t.exit_code ?? 0),
          FORGE_SIM_REPORT: JSON.stringify({ gasUsed: t.cost.gas_used, llm }),
        },
      },
    };
  });
  return {
    name: s.suite,
    description: s.description ?? '',
    tenantId: s.tenant,
    runId: s.run,
    pricing,
    tasks,
    domains: Object.fromEntries(s.tasks.map((t) => [t.id, t.domain])),
  };
}

export function loadSuite(path: string): Suite {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new RunnerError('FORGE_ERR_SUITE_CONFIG', `cannot read ${path}: ${(e as Error).message}`, { field: 'file' });
  }
  return parseSuite(text, path);
}

/** The suite's expected cost per task (the admission estimates), USD micros. */
export function estimateSuite(s: Suite): Array<{ taskId: string; totalMicros: number }> {
  return s.tasks.map((t) => ({ taskId: t.taskId, totalMicros: priceProfile(t, s.pricing, undefined, 1).total }));
}

export type SuiteProgress =
  | { kind: 'start'; task: TaskSpec }
  | { kind: 'end'; outcome: TaskOutcome }
  | { kind: 'postponed'; postponed: Postponed }
  | { kind: 'intake'; open: boolean; cause?: StateChange }
  | { kind: 'hung'; hung: HungTask };

export interface RunSuiteOptions {
  /** A parsed suite, or the path of a suite file. */
  suite: Suite | string;
  bus: HaltBus;
  admission: AdmissionClient;
  events: EventEmitterClient;
  executor?: Executor;
  /** Run the suite under another tenant / run id (e.g. a fresh run each time). */
  tenantId?: string;
  runId?: string;
  /** Tasks at once. Default 4. */
  concurrency?: number;
  /**
   * On a halt or a denial: 'stop' (default) leaves the remaining tasks unstarted and returns once the
   * tasks in flight end; 'wait' keeps them queued until the halt is lifted.
   */
  whenHalted?: 'stop' | 'wait';
  /** With 'stop': how long an unreachable guardrail is retried before the suite stops, ms. Default 30,000. */
  unavailableTimeoutMs?: number;
  onProgress?(p: SuiteProgress): void;
  onError?: ErrorHandler;
  /** Aborting it stops the suite: in-flight tasks are aborted, the rest left unstarted. */
  signal?: AbortSignal;
}

export interface SuiteReport {
  suite: string;
  tenantId: string;
  runId: string;
  outcomes: TaskOutcome[];
  /** Tasks that never started, with why. */
  notStarted: Array<{ taskId: string; cause: Postponed['cause'] | 'stopped'; reason: string }>;
  /** The halt that stopped the suite, if one did. */
  haltedBy?: { scope?: string; state?: string; reason: string };
  /** An EMERGENCY_STOP terminated the run. */
  terminated: boolean;
  /**
   * What stopped the suite other than a halt: a cost event the collector refused (or could not take), a
   * refused API key. Set means the run did not do what it was asked: its caller reports a failure.
   */
  failure?: { code: string; message: string };
  /** The tasks' cost as the runner priced it (what it settled), USD micros. */
  totalCostMicros: number;
  totalCostUsd: string;
  /** The tasks' cost as the collector stored it (its receipts), USD micros: the spend on record. */
  recordedMicros: number;
  recordedUsd: string;
  /** Tasks that ran but whose cost event was not stored, with the runner's price and why. */
  notRecorded: Array<{ taskId: string; costMicros: number; code: string; reason: string }>;
}

/**
 * Runs a suite on an in-process queue through a TaskRunner: the embedded default behind
 * `forge run --suite FILE`. Against a bus, an admission client and an event client the caller wires
 * (in-process ones for the embedded default, HTTP / Redis ones for a deployment).
 */
export async function runSuite(o: RunSuiteOptions): Promise<SuiteReport> {
  const base = typeof o.suite === 'string' ? loadSuite(o.suite) : o.suite;
  const tenantId = o.tenantId ?? base.tenantId;
  const runId = o.runId ?? base.runId;
  const tasks = base.tasks.map((t) => ({ ...t, tenantId, runId }));
  const whenHalted = o.whenHalted ?? 'stop';
  const outcomes: TaskOutcome[] = [];
  const notStarted = new Map<string, SuiteReport['notStarted'][number]>();
  let haltedBy: SuiteReport['haltedBy'];
  let failure: SuiteReport['failure'];
  let terminated = false;
  let stopping = false;
  let unavailableSince: number | undefined;
  const progress = (p: SuiteProgress): void => {
    try {
      o.onProgress?.(p);
    } catch (e) {
      o.onError?.(e, 'suite progress');
    }
  };

  const runner = new TaskRunner({
    bus: o.bus,
    admission: o.admission,
    events: o.events,
    ...(o.executor ? { executor: o.executor } : {}),
    pricing: base.pricing,
    intakeScopes: [tenantScope(tenantId), runScope(tenantId, runId)],
    ...(o.onError ? { onError: o.onError } : {}),
    onTaskStart: (task) => progress({ kind: 'start', task }),
    onTaskEnd: (outcome) => {
      outcomes.push(outcome);
      progress({ kind: 'end', outcome });
      // A cost that cannot be recorded must not be spent again: the next tasks would fail alike.
      if (!outcome.emitted) fail(outcome.notRecorded?.code ?? 'FORGE_ERR_EVENTS_REJECTED', outcome.notRecorded?.reason ?? 'the cost event was not stored');
    },
    onPostponed: (postponed) => progress({ kind: 'postponed', postponed }),
    onIntake: (open, cause) => {
      progress({ kind: 'intake', open, ...(cause ? { cause } : {}) });
      if (!open && whenHalted === 'stop') stop(cause ? { scope: cause.scope, state: cause.state, reason: cause.reason } : { reason: 'halted' });
    },
    onHung: (hung) => progress({ kind: 'hung', hung }),
    onRunTerminated: (_run, c) => {
      terminated = true;
      stop({ scope: c.scope, state: c.state, reason: c.reason });
    },
  });

  const queue = new InProcessTaskQueue(runner, {
    concurrency: o.concurrency ?? 4,
    onPostpone: (task, r) => {
      const p = r.postponed;
      if (r.kind === 'drop') {
        notStarted.set(task.taskId, { taskId: task.taskId, cause: p.cause, reason: p.reason });
        return false;
      }
      const unavailable = p.cause === 'admission_unavailable' || p.cause === 'halt_state_unavailable';
      // A refused key or an answer the runner does not understand will not pass: stop at once.
      if (p.cause === 'admission_unavailable' && p.code !== undefined && p.code !== 'FORGE_ERR_ADMISSION_UNAVAILABLE') {
        fail(p.code, p.reason);
        notStarted.set(task.taskId, { taskId: task.taskId, cause: p.cause, reason: p.reason });
        return false;
      }
      if (whenHalted === 'wait') return true;
      // Denied while other tasks of the suite still hold reservations, with no stop in force: what they do
      // not spend frees up when they settle, so this is not the end; try again after the delay given.
      if (p.cause === 'denied' && p.state !== 'HARD_STOP' && p.state !== 'EMERGENCY_STOP' && queue.running > 0) return true;
      if (unavailable) {
        unavailableSince ??= Date.now();
        if (Date.now() - unavailableSince < (o.unavailableTimeoutMs ?? 30_000)) return true;
      }
      stop({ ...(p.scope ? { scope: p.scope } : {}), ...(p.state ? { state: p.state } : {}), reason: p.reason });
      notStarted.set(task.taskId, { taskId: task.taskId, cause: p.cause, reason: p.reason });
      return false;
    },
    onResult: (_task, r) => {
      if (r.kind === 'done') unavailableSince = undefined;
    },
  });

  const stoppedReason = (): string => haltedBy?.reason ?? (failure ? `the run stopped: ${failure.message}` : 'run terminated');
  function stop(why: SuiteReport['haltedBy'] | undefined): void {
    if (why && !haltedBy) haltedBy = why;
    if (stopping) return;
    stopping = true;
    // Leave the rest unstarted; what is running finishes (or was aborted by the runner).
    queueMicrotask(() => {
      for (const t of queue.drain()) notStarted.set(t.taskId, { taskId: t.taskId, cause: 'stopped', reason: stoppedReason() });
    });
  }
  function fail(code: string, message: string): void {
    failure ??= { code, message };
    stop(undefined);
  }

  const onAbort = (): void => {
    haltedBy ??= { reason: 'stopped by the caller' };
    stop(undefined);
    void runner.close({ abort: true });
  };
  o.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    await queue.start();
    for (const t of tasks) queue.add(t);
    if (stopping) for (const t of queue.drain()) notStarted.set(t.taskId, { taskId: t.taskId, cause: 'stopped', reason: failure ? stoppedReason() : (haltedBy?.reason ?? 'halted') });
    await queue.onIdle();
    // A drain scheduled as a microtask may still be pending.
    await new Promise((r) => setImmediate(r));
    await queue.onIdle();
  } finally {
    o.signal?.removeEventListener('abort', onAbort);
    await queue.close();
  }
  const total = outcomes.reduce((s, x) => s + x.costMicros, 0);
  const recorded = outcomes.reduce((s, x) => s + x.recordedMicros, 0);
  for (const x of outcomes) notStarted.delete(x.taskId);
  return {
    suite: base.name,
    tenantId,
    runId,
    outcomes,
    notStarted: tasks.filter((t) => notStarted.has(t.taskId)).map((t) => notStarted.get(t.taskId)!),
    ...(haltedBy ? { haltedBy } : {}),
    terminated,
    ...(failure ? { failure } : {}),
    totalCostMicros: total,
    totalCostUsd: microsToUsd(total),
    recordedMicros: recorded,
    recordedUsd: microsToUsd(recorded),
    notRecorded: outcomes.filter((x) => !x.emitted).map((x) => ({ taskId: x.taskId, costMicros: x.costMicros, code: x.notRecorded?.code ?? 'error', reason: x.notRecorded?.reason ?? '' })),
  };
}

