import { microsToUsd, scopesOf, usdToMicros, type Micros, type StateChange } from '../rules/index.ts';
import type { Guardrail, HaltBus } from '../guard/index.ts';
import type { TaskCostInput } from '../collector/index.ts';
import type { AgentStore } from './agents.ts';
import { EvalError } from './errors.ts';
import type { AgentExecutor, AgentRunResult } from './executor.ts';
import type { EvalResults, RunStatus, TaskResultRecord, TaskStatus } from './results.ts';
import { scoreTask, type Judge, type TaskScore } from './rubric.ts';
import { taskInput, type EvalSuite, type EvalTask } from './suite.ts';

/** The guardrail's admissions as the engine uses them (guard's Guardrail satisfies it; `forge run` wires it). */
export type EvalAdmissions = Pick<Guardrail, 'admit' | 'settle'>;

/**
 * Records a task's cost event (the collector's `forge.task.finalized`, idempotent by event_id) and answers
 * the total the collector priced and stored, USD micros. `forge run` wires it to POST /v1/events.
 */
export type CostSink = (event: TaskCostInput & { event_id: string; finalized_at: string; status: 'success' | 'failed' }) => Promise<{ totalMicros: Micros; duplicate: boolean }>;

export interface EvalEngineDeps {
  agents: Pick<AgentStore, 'files'>;
  results: EvalResults;
  admissions: EvalAdmissions;
  /** Halts: EMERGENCY_STOP on the run's scopes aborts the tasks in flight; any stop ends intake. */
  bus: Pick<HaltBus, 'subscribe'>;
  costs: CostSink;
  executor: AgentExecutor;
  judge?: Judge;
  /** Compute price of the suite's environment, USD micros per hour: the admission estimate's compute part. */
  computeHourMicros?: Micros;
  now?: () => number;
  onError?: (e: unknown, where: string) => void;
}

export interface EvalRunOptions {
  tenantId: string;
  runId: string;
  suite: EvalSuite;
  agentId: string;
  /** Tasks at once. Default 2. */
  concurrency?: number;
  /** List the run on the public leaderboard. */
  publish?: boolean;
  signal?: AbortSignal;
  onTask?: (r: TaskResultRecord) => void;
}

export interface EvalRunReport {
  tenantId: string;
  runId: string;
  suite: string;
  agentId: string;
  status: RunStatus;
  reason: string;
  tasksTotal: number;
  tasksRun: number;
  passed: number;
  /** Tasks of an earlier attempt of this run that were kept, not run (or charged) again. */
  resumed: number;
  /** passed / tasksTotal. */
  passRate: number;
  totalCostMicros: Micros;
  costPerSuccessMicros: Micros | null;
}

/** The task's cost event id: one per (tenant, run, task), so a replay is counted once by the collector. */
export const evalEventId = (tenantId: string, runId: string, taskId: string): string => `eval:${tenantId}:${runId}:${taskId}`.slice(0, 128);

/** ms as decimal hours (9 places: a millisecond is 2.8e-7 h). */
const hoursOf = (ms: number): string => (ms / 3_600_000).toFixed(9);

/**
 * Runs an agent over a suite under the guardrail: before each task an admission (reserve its estimate: the
 * evaluation fee plus compute for the task's time limit), after it the cost event and the settlement; a
 * denial or a halt ends intake (the rest are recorded as not started), EMERGENCY_STOP aborts the tasks in
 * flight. Each task's answer is scored against its rubric, and the result stored with its cost event id.
 * Re-running a run id resumes it: tasks with a stored result are kept, not run or charged again.
 */
export class EvalEngine {
  constructor(private readonly d: EvalEngineDeps) {}

  async run(o: EvalRunOptions): Promise<EvalRunReport> {
    const now = this.d.now ?? Date.now;
    const { suite, tenantId, runId } = o;
    const { agent, files } = await this.d.agents.files(tenantId, o.agentId);
    const prior = new Map((await this.d.results.tasks(tenantId, runId)).filter((t) => t.status !== 'not_started' && t.status !== 'aborted').map((t) => [t.taskId, t]));
    const existing = await this.d.results.run(tenantId, runId);
    if (existing && (existing.agentId !== agent.agent_id || existing.suite !== suite.suite)) {
      throw new EvalError('FORGE_ERR_VALIDATION', `run ${runId} is of agent ${existing.agentId.slice(0, 12)} on ${existing.suite}: use a new run id`, { field: 'run_id' });
    }
    const startedAt = existing?.startedAt ?? now();
    const runRecord = {
      tenantId,
      runId,
      suite: suite.suite,
      suiteVersion: suite.version,
      agentId: agent.agent_id,
      agentName: agent.name,
      executor: this.d.executor.name,
      tasksTotal: suite.tasks.length,
      published: o.publish ?? existing?.published ?? false,
      startedAt,
    };
    await this.d.results.putRun({ ...runRecord, status: 'running', reason: '', finishedAt: null });

    const inFlight = new AbortController();
    let stopReason: string | undefined;
    let halted = false;
    const stop = (why: string, isHalt: boolean): void => {
      stopReason ??= why;
      halted ||= isHalt;
    };
    const scopes = new Set(scopesOf(tenantId, runId));
    const unsubscribe = this.d.bus.subscribe((c: StateChange) => {
      if (!scopes.has(c.scope)) return;
      if (c.state === 'HARD_STOP' || c.state === 'EMERGENCY_STOP') stop(`${c.scope} ${c.state}: ${c.reason}`, true);
      if (c.state === 'EMERGENCY_STOP') inFlight.abort();
    });
    const onCallerAbort = (): void => {
      stop('stopped by the caller', false);
      inFlight.abort();
    };
    o.signal?.addEventListener('abort', onCallerAbort, { once: true });

    const results: TaskResultRecord[] = [];
    const queue = suite.tasks.filter((t) => !prior.has(t.id));
    const worker = async (): Promise<void> => {
      for (let t = queue.shift(); t; t = queue.shift()) {
        const r = stopReason ? this.notStarted(o, t, stopReason, now()) : await this.one(o, t, agent, files, inFlight.signal, stop);
        results.push(r);
        await this.d.results.putTask(r);
        try {
          o.onTask?.(r);
        } catch (e) {
          this.d.onError?.(e, 'eval progress');
        }
      }
    };
    let failure: string | undefined;
    try {
      await Promise.all(Array.from({ length: Math.max(1, Math.min(o.concurrency ?? 2, 64)) }, worker));
    } catch (e) {
      failure = (e as Error).message;
      throw e;
    } finally {
      unsubscribe();
      o.signal?.removeEventListener('abort', onCallerAbort);
      const status: RunStatus = failure ? 'failed' : halted ? 'halted' : stopReason ? 'failed' : 'finished';
      await this.d.results.putRun({ ...runRecord, status, reason: failure ?? stopReason ?? '', finishedAt: now() }).catch((e: unknown) => this.d.onError?.(e, 'eval run record'));
    }
    const all = [...prior.values(), ...results];
    const passed = all.filter((r) => r.passed).length;
    const cost = all.reduce((s, r) => s + r.costTotalMicros, 0);
    return {
      tenantId,
      runId,
      suite: suite.suite,
      agentId: agent.agent_id,
      status: halted ? 'halted' : stopReason ? 'failed' : 'finished',
      reason: stopReason ?? '',
      tasksTotal: suite.tasks.length,
      tasksRun: all.filter((r) => r.status !== 'not_started').length,
      passed,
      resumed: prior.size,
      passRate: suite.tasks.length ? passed / suite.tasks.length : 0,
      totalCostMicros: cost,
      costPerSuccessMicros: passed ? Math.floor(cost / passed) : null,
    };
  }

  private notStarted(o: EvalRunOptions, t: EvalTask, reason: string, at: number): TaskResultRecord {
    return {
      ...this.base(o, t),
      status: 'not_started',
      passed: false,
      scoreMilli: 0,
      checks: [],
      answer: undefined,
      logs: '',
      error: `not started: ${reason}`,
      exitCode: null,
      durationMs: 0,
      costEventId: '',
      costTotalMicros: 0,
      finishedAt: at,
    };
  }

  private base(o: EvalRunOptions, t: EvalTask) {
    return { tenantId: o.tenantId, runId: o.runId, taskId: t.id, suite: o.suite.suite, domain: t.domain, category: t.category };
  }

  /** One task: admit, run, score, record the cost event, settle. */
  private async one(
    o: EvalRunOptions,
    t: EvalTask,
    agent: Awaited<ReturnType<AgentStore['files']>>['agent'],
    files: Awaited<ReturnType<AgentStore['files']>>['files'],
    signal: AbortSignal,
    stop: (why: string, isHalt: boolean) => void,
  ): Promise<TaskResultRecord> {
    const now = this.d.now ?? Date.now;
    const suite = o.suite;
    const fee = usdToMicros(t.evaluation_fee_usd);
    const estimate = Math.max(1, fee + Math.ceil(((this.d.computeHourMicros ?? 0) * suite.timeout_ms) / 3_600_000));
    const taskType = `eval.${t.domain}.${t.category}`;
    const decision = await this.d.admissions.admit({ tenantId: o.tenantId, runId: o.runId, taskType, estimatedMicros: estimate });
    if (decision.decision === 'deny') {
      stop(`admission denied (${decision.scope} ${decision.state}): ${decision.reason}`, decision.state === 'HARD_STOP' || decision.state === 'EMERGENCY_STOP');
      return this.notStarted(o, t, `admission denied: ${decision.reason}`, now());
    }
    let run: AgentRunResult;
    try {
      run = await this.d.executor.run({ agent, files, task: taskInput(t), timeoutMs: suite.timeout_ms, memoryMb: suite.memory_mb }, signal);
    } catch (e) {
      run = { outcome: 'crash', exitCode: null, signal: null, logs: '', error: `executor failed: ${(e as Error).message}`, durationMs: 0, isolation: { network: 'open', memory: 'none' } };
    }
    const score: TaskScore = await scoreTask(t, run.outcome === 'ok' ? run.answer : undefined, this.d.judge);
    const status: TaskStatus = run.outcome === 'ok' ? (score.passed ? 'passed' : 'failed') : run.outcome;
    const finishedAt = now();
    const eventId = evalEventId(o.tenantId, o.runId, t.id);
    let costMicros = 0;
    let costError = '';
    try {
      const receipt = await this.d.costs({
        event_id: eventId,
        tenant_id: o.tenantId,
        run_id: o.runId,
        task_id: t.id,
        task_type: taskType,
        environment: suite.environment,
        status: score.passed ? 'success' : 'failed',
        finalized_at: new Date(finishedAt).toISOString(),
        rli_eval_usd: t.evaluation_fee_usd,
        task_hours: hoursOf(run.durationMs),
      });
      costMicros = receipt.totalMicros;
    } catch (e) {
      costError = `cost event not recorded: ${(e as Error).message}`;
      stop(costError, false);
    }
    try {
      await this.d.admissions.settle(decision.reservationId, { eventId, amountMicros: costError ? estimate : costMicros, eventTime: finishedAt });
    } catch (e) {
      this.d.onError?.(e, `settle ${t.id}`);
    }
    return {
      ...this.base(o, t),
      status,
      passed: score.passed,
      scoreMilli: Math.round(score.score * 1000),
      checks: score.checks,
      answer: run.answer,
      logs: run.logs,
      error: [run.error, costError].filter(Boolean).join('; '),
      exitCode: run.exitCode,
      durationMs: run.durationMs,
      costEventId: costError ? '' : eventId,
      costTotalMicros: costMicros,
      finishedAt,
    };
  }
}

/** One line for a person: pass rate and cost per successful task. */
export function reportLine(r: EvalRunReport): string {
  const pct = (r.passRate * 100).toFixed(1);
  const per = r.costPerSuccessMicros === null ? 'n/a (no task passed)' : `${microsToUsd(r.costPerSuccessMicros)} USD`;
  return `eval ${r.suite} run ${r.runId}: ${r.passed}/${r.tasksTotal} passed (${pct}%), cost ${microsToUsd(r.totalCostMicros)} USD, cost per successful task ${per}, status ${r.status}${r.reason ? ` (${r.reason})` : ''}${r.resumed ? `; ${r.resumed} kept from an earlier attempt` : ''}`;
}
