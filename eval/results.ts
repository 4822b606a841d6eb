import type { Store } from '../store/index.ts';
import type { CheckResult } from './rubric.ts';

export type RunStatus = 'running' | 'finished' | 'halted' | 'failed';
export type TaskStatus = 'passed' | 'failed' | 'crash' | 'timeout' | 'aborted' | 'no_answer' | 'bad_answer' | 'unsupported' | 'not_started';

/** One eval run: an agent over a suite, for a tenant. */
export interface EvalRunRecord {
  tenantId: string;
  runId: string;
  suite: string;
  suiteVersion: number;
  agentId: string;
  agentName: string;
  executor: string;
  status: RunStatus;
  /** Why the run halted or failed ('' otherwise). */
  reason: string;
  tasksTotal: number;
  /** Shown on the public leaderboard. */
  published: boolean;
  /** Epoch ms. */
  startedAt: number;
  finishedAt: number | null;
}

/** One task's result; its cost is the cost event `costEventId` (USD micros as the collector priced it). */
export interface TaskResultRecord {
  tenantId: string;
  runId: string;
  taskId: string;
  suite: string;
  domain: string;
  category: string;
  status: TaskStatus;
  passed: boolean;
  /** 0..1000 (thousandths of the weighted rubric score). */
  scoreMilli: number;
  checks: CheckResult[];
  answer: unknown;
  logs: string;
  error: string;
  exitCode: number | null;
  durationMs: number;
  costEventId: string;
  costTotalMicros: number;
  finishedAt: number;
}

/** A leaderboard row: one run, its rates, and its cost in integer USD micros. */
export interface LeaderboardRow {
  runId: string;
  /** Absent on the public board. */
  tenantId?: string;
  agentId: string;
  agentName: string;
  status: RunStatus;
  tasksTotal: number;
  tasksRun: number;
  passed: number;
  /** passed / tasksTotal (tasks never started count as not passed). */
  passRate: number;
  /** Mean rubric score over tasksTotal, 0..1. */
  meanScore: number;
  totalCostMicros: number;
  costPerTaskMicros: number | null;
  costPerSuccessMicros: number | null;
  /** Sum of task durations, ms, and its mean per task run. */
  totalDurationMs: number;
  meanDurationMs: number | null;
  startedAt: number;
  finishedAt: number | null;
}

const MAX_TEXT = 16 * 1024;
let lastVersion = 0;
/** Row versions for ReplacingMergeTree: microsecond clock, strictly increasing within the process. */
function nextVersion(): number {
  lastVersion = Math.max(Date.now() * 1000, lastVersion + 1);
  return lastVersion;
}

const clip = (s: string): string => (s.length > MAX_TEXT ? `${s.slice(0, MAX_TEXT)}…` : s);

/** eval_runs and eval_task_results (migration 0015). Every read names its tenant, except the public board's. */
export class EvalResults {
  readonly #store: Pick<Store, 'client' | 'database'>;

  constructor(store: Pick<Store, 'client' | 'database'>) {
    this.#store = store;
  }

  async putRun(r: EvalRunRecord): Promise<void> {
    await this.#store.client.insert({
      table: `${this.#store.database}.eval_runs`,
      values: [
        {
          tenant_id: r.tenantId,
          run_id: r.runId,
          suite: r.suite,
          suite_version: r.suiteVersion,
          agent_id: r.agentId,
          agent_name: r.agentName,
          executor: r.executor,
          status: r.status,
          reason: clip(r.reason),
          tasks_total: r.tasksTotal,
          published: r.published,
          started_at: r.startedAt,
          finished_at: r.finishedAt,
          version: nextVersion(),
        },
      ],
      format: 'JSONEachRow',
    });
  }

  async putTask(t: TaskResultRecord): Promise<void> {
    await this.#store.client.insert({
      table: `${this.#store.database}.eval_task_results`,
      values: [
        {
          tenant_id: t.tenantId,
          run_id: t.runId,
          task_id: t.taskId,
          suite: t.suite,
          domain: t.domain,
          category: t.category,
          status: t.status,
          passed: t.passed,
          score_milli: t.scoreMilli,
          checks: JSON.stringify(t.checks),
          answer: t.answer === undefined ? '' : clip(JSON.stringify(t.answer)),
          logs: clip(t.logs),
          error: clip(t.error),
          exit_code: t.exitCode,
          duration_ms: t.durationMs,
          cost_event_id: t.costEventId,
          cost_total_micros: t.costTotalMicros,
          finished_at: t.finishedAt,
          version: nextVersion(),
        },
      ],
      format: 'JSONEachRow',
    });
  }

  async run(tenantId: string, runId: string): Promise<EvalRunRecord | undefined> {
    return (await this.#runs('tenant_id = {t:String} AND run_id = {r:String}', { t: tenantId, r: runId }))[0];
  }

  /** The tenant's runs, newest first (optionally of one suite). */
  async runs(tenantId: string, suite?: string): Promise<EvalRunRecord[]> {
    return this.#runs(`tenant_id = {t:String}${suite ? ' AND suite = {s:String}' : ''}`, { t: tenantId, ...(suite ? { s: suite } : {}) });
  }

  async tasks(tenantId: string, runId: string): Promise<TaskResultRecord[]> {
    const rs = await this.#store.client.query({
      query: `SELECT tenant_id, run_id, task_id, suite, domain, category, status, passed, score_milli, checks, answer, logs, error, exit_code, duration_ms,
  cost_event_id, cost_total_micros, toUnixTimestamp64Milli(finished_at) AS finished_ms
FROM ${this.#store.database}.eval_task_results FINAL WHERE tenant_id = {t:String} AND run_id = {r:String} ORDER BY task_id`,
      query_params: { t: tenantId, r: runId },
      format: 'JSONEachRow',
    });
    return (await rs.json<Record<string, unknown>>()).map((x) => ({
      tenantId: String(x.tenant_id),
      runId: String(x.run_id),
      taskId: String(x.task_id),
      suite: String(x.suite),
      domain: String(x.domain),
      category: String(x.category),
      status: String(x.status) as TaskStatus,
      passed: Boolean(x.passed),
      scoreMilli: Number(x.score_milli),
      checks: JSON.parse(String(x.checks)) as CheckResult[],
      answer: x.answer === '' ? undefined : safeJson(String(x.answer)),
      logs: String(x.logs),
      error: String(x.error),
      exitCode: x.exit_code === null ? null : Number(x.exit_code),
      durationMs: Number(x.duration_ms),
      costEventId: String(x.cost_event_id),
      costTotalMicros: Number(x.cost_total_micros),
      finishedAt: Number(x.finished_ms),
    }));
  }

  /** A suite's board for one tenant, or (publicOnly) over every tenant's published runs, tenant left out. */
  async leaderboard(suite: string, who: { tenantId: string } | { publicOnly: true }): Promise<LeaderboardRow[]> {
    const byTenant = 'tenantId' in who;
    const runFilter = byTenant ? 'tenant_id = {t:String} AND suite = {s:String}' : 'published AND suite = {s:String}';
    const rs = await this.#store.client.query({
      query: `SELECT r.tenant_id AS tenant_id, r.run_id AS run_id, r.agent_id AS agent_id, r.agent_name AS agent_name, r.status AS status, r.tasks_total AS tasks_total,
  toUnixTimestamp64Milli(r.started_at) AS started_ms, if(isNull(r.finished_at), NULL, toUnixTimestamp64Milli(assumeNotNull(r.finished_at))) AS finished_ms,
  t.ran AS ran, t.passed AS passed, t.score_sum AS score_sum, t.cost AS cost, t.dur AS dur
FROM (SELECT * FROM ${this.#store.database}.eval_runs FINAL WHERE ${runFilter}) AS r
LEFT JOIN (
  SELECT tenant_id, run_id, countIf(status != 'not_started') AS ran, countIf(passed) AS passed, sum(score_milli) AS score_sum,
    sum(cost_total_micros) AS cost, sum(duration_ms) AS dur
  FROM ${this.#store.database}.eval_task_results FINAL WHERE suite = {s:String}${byTenant ? ' AND tenant_id = {t:String}' : ''}
  GROUP BY tenant_id, run_id
) AS t ON t.tenant_id = r.tenant_id AND t.run_id = r.run_id
LIMIT 1000`,
      query_params: { s: suite, ...(byTenant ? { t: who.tenantId } : {}) },
      format: 'JSONEachRow',
    });
    const rows = (await rs.json<Record<string, unknown>>()).map((x): LeaderboardRow => {
      const total = Number(x.tasks_total);
      const ran = Number(x.ran ?? 0);
      const passed = Number(x.passed ?? 0);
      const cost = Number(x.cost ?? 0);
      const dur = Number(x.dur ?? 0);
      return {
        runId: String(x.run_id),
        ...(byTenant ? { tenantId: String(x.tenant_id) } : {}),
        agentId: String(x.agent_id),
        agentName: String(x.agent_name),
        status: String(x.status) as RunStatus,
        tasksTotal: total,
        tasksRun: ran,
        passed,
        passRate: total === 0 ? 0 : passed / total,
        meanScore: total === 0 ? 0 : Number(x.score_sum ?? 0) / total / 1000,
        totalCostMicros: cost,
        costPerTaskMicros: ran === 0 ? null : Math.floor(cost / ran),
        costPerSuccessMicros: passed === 0 ? null : Math.floor(cost / passed),
        totalDurationMs: dur,
        meanDurationMs: ran === 0 ? null : Math.round(dur / ran),
        startedAt: Number(x.started_ms),
        finishedAt: x.finished_ms === null ? null : Number(x.finished_ms),
      };
    });
    // Best first: pass rate, then the cheaper success, then the earlier run.
    return rows.sort((a, b) => b.passRate - a.passRate || (a.costPerSuccessMicros ?? Infinity) - (b.costPerSuccessMicros ?? Infinity) || a.startedAt - b.startedAt);
  }

  async #runs(where: string, params: Record<string, unknown>): Promise<EvalRunRecord[]> {
    const rs = await this.#store.client.query({
      query: `SELECT tenant_id, run_id, suite, suite_version, agent_id, agent_name, executor, status, reason, tasks_total, published,
  toUnixTimestamp64Milli(started_at) AS started_ms, if(isNull(finished_at), NULL, toUnixTimestamp64Milli(assumeNotNull(finished_at))) AS finished_ms
FROM ${this.#store.database}.eval_runs FINAL WHERE ${where} ORDER BY started_at DESC, run_id LIMIT 1000`,
      query_params: params,
      format: 'JSONEachRow',
    });
    return (await rs.json<Record<string, unknown>>()).map((x) => ({
      tenantId: String(x.tenant_id),
      runId: String(x.run_id),
      suite: String(x.suite),
      suiteVersion: Number(x.suite_version),
      agentId: String(x.agent_id),
      agentName: String(x.agent_name),
      executor: String(x.executor),
      status: String(x.status) as RunStatus,
      reason: String(x.reason),
      tasksTotal: Number(x.tasks_total),
      published: Boolean(x.published),
      startedAt: Number(x.started_ms),
      finishedAt: x.finished_ms === null ? null : Number(x.finished_ms),
    }));
  }
}

function safeJson(s: string): unknown {
  try {
    return JSON.parse(s) as unknown;
  } catch {
    return s;
  }
}
