import type {} from '@fastify/swagger';
import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { microsToUsd } from '../../rules/index.ts';
import { eventComponents, type Store } from '../../store/index.ts';
import type { EvalResults, LeaderboardRow, TaskResultRecord } from '../../eval/index.ts';
import { ApiError, errorBodySchema } from '../errors.ts';
import { RUN_ID, TENANT_ID } from '../schemas.ts';
import { tenantOfRead } from './agents.ts';

const errors = { 400: errorBodySchema, 401: errorBodySchema, 403: errorBodySchema, 404: errorBodySchema };
const startErrors = { ...errors, 409: errorBodySchema, 429: errorBodySchema };
const SUITE = { type: 'string', pattern: '^[A-Za-z0-9._-]{1,64}$' } as const;
const READERS = ['runner', 'finance', 'auditor', 'admin'] as const;
const DAY = 86_400_000;
const usdOrNull = { type: ['string', 'null'] } as const;
const iso = (ms: number | null): string | null => (ms === null ? null : new Date(ms).toISOString());

const boardRow = {
  type: 'object',
  properties: {
    rank: { type: 'integer' },
    run_id: { type: 'string' },
    tenant_id: { type: 'string' },
    agent_id: { type: 'string' },
    agent_name: { type: 'string' },
    status: { type: 'string' },
    tasks_total: { type: 'integer' },
    tasks_run: { type: 'integer' },
    passed: { type: 'integer' },
    pass_rate: { type: 'number' },
    mean_score: { type: 'number' },
    total_cost_usd: { type: 'string' },
    cost_per_task_usd: usdOrNull,
    cost_per_success_usd: usdOrNull,
    total_duration_ms: { type: 'integer' },
    mean_duration_ms: { type: ['integer', 'null'] },
    started_at: { type: 'string' },
    finished_at: { type: ['string', 'null'] },
  },
} as const;
const board = { type: 'object', properties: { suite: { type: 'string' }, rows: { type: 'array', items: boardRow } } } as const;

function boardView(rows: LeaderboardRow[]) {
  return rows.map((r, i) => ({
    rank: i + 1,
    run_id: r.runId,
    ...(r.tenantId !== undefined ? { tenant_id: r.tenantId } : {}),
    agent_id: r.agentId,
    agent_name: r.agentName,
    status: r.status,
    tasks_total: r.tasksTotal,
    tasks_run: r.tasksRun,
    passed: r.passed,
    pass_rate: Math.round(r.passRate * 10_000) / 10_000,
    mean_score: Math.round(r.meanScore * 1000) / 1000,
    total_cost_usd: microsToUsd(r.totalCostMicros),
    cost_per_task_usd: r.costPerTaskMicros === null ? null : microsToUsd(r.costPerTaskMicros),
    cost_per_success_usd: r.costPerSuccessMicros === null ? null : microsToUsd(r.costPerSuccessMicros),
    total_duration_ms: r.totalDurationMs,
    mean_duration_ms: r.meanDurationMs,
    started_at: iso(r.startedAt),
    finished_at: iso(r.finishedAt),
  }));
}

const check = {
  type: 'object',
  properties: { id: { type: 'string' }, kind: { type: 'string' }, weight: { type: 'number' }, critical: { type: 'boolean' }, score: { type: 'number' }, passed: { type: 'boolean' }, skipped: { type: 'boolean' }, detail: { type: 'string' } },
} as const;
const taskRow = {
  type: 'object',
  properties: {
    task_id: { type: 'string' },
    domain: { type: 'string' },
    category: { type: 'string' },
    status: { type: 'string' },
    passed: { type: 'boolean' },
    score: { type: 'number' },
    checks: { type: 'array', items: check },
    answer: {},
    logs: { type: 'string' },
    error: { type: 'string' },
    exit_code: { type: ['integer', 'null'] },
    duration_ms: { type: 'integer' },
    cost_event_id: { type: 'string' },
    cost_total_usd: { type: 'string' },
    cost_components_usd: { type: 'object', additionalProperties: { type: 'string' } },
    finished_at: { type: 'string' },
  },
} as const;
const runView = {
  type: 'object',
  properties: {
    run_id: { type: 'string' },
    tenant_id: { type: 'string' },
    suite: { type: 'string' },
    suite_version: { type: 'integer' },
    agent_id: { type: 'string' },
    agent_name: { type: 'string' },
    executor: { type: 'string' },
    status: { type: 'string' },
    reason: { type: 'string' },
    tasks_total: { type: 'integer' },
    published: { type: 'boolean' },
    started_at: { type: 'string' },
    finished_at: { type: ['string', 'null'] },
  },
} as const;

/** A run to start: eval/'s EvalRunRequest. */
export interface StartEvalRun {
  tenantId: string;
  suite: string;
  agentId: string;
  runId: string;
  concurrency: number;
}

export interface EvalRouteOptions {
  results: EvalResults;
  store: Pick<Store, 'listEvents'>;
  /**
   * Starts a run in the background of this process (the composition root wires eval's EvalRunLauncher). It
   * resolves once the run is accepted, and rejects with coded errors: unknown suite or agent
   * (FORGE_ERR_NOT_FOUND, field suite / agent_id), the run id running or of another agent
   * (FORGE_ERR_CONFLICT), too many runs at once (FORGE_ERR_RATE_LIMITED). Without it POST /v1/eval/runs is
   * not offered.
   */
  startRun?: (r: StartEvalRun) => Promise<void>;
}

const AGENT_ID_HEX = { type: 'string', pattern: '^[0-9a-f]{64}$' } as const;

/** Eval runs, their task results, and leaderboards per suite (the tenant's, and the public one of published runs). */
export async function evalRoutes(app: FastifyInstance, opts: EvalRouteOptions): Promise<void> {
  const runOut = (r: NonNullable<Awaited<ReturnType<EvalResults['run']>>>) => ({
    run_id: r.runId,
    tenant_id: r.tenantId,
    suite: r.suite,
    suite_version: r.suiteVersion,
    agent_id: r.agentId,
    agent_name: r.agentName,
    executor: r.executor,
    status: r.status,
    reason: r.reason,
    tasks_total: r.tasksTotal,
    published: r.published,
    started_at: iso(r.startedAt),
    finished_at: iso(r.finishedAt),
  });

  app.get<{ Querystring: { tenant_id?: string; suite?: string } }>(
    '/v1/eval/runs',
    {
      config: { roles: READERS },
      schema: {
        tags: ['eval'],
        summary: "The tenant's eval runs, newest first",
        querystring: { type: 'object', additionalProperties: false, properties: { tenant_id: TENANT_ID, suite: SUITE } },
        response: { 200: { type: 'object', properties: { runs: { type: 'array', items: runView } } }, ...errors },
      },
    },
    async (req) => ({ runs: (await opts.results.runs(tenantOfRead(req, req.query.tenant_id), req.query.suite)).map(runOut) }),
  );

  const startRun = opts.startRun;
  if (startRun) {
    app.post<{ Body: { suite: string; agent_id: string; run_id?: string; concurrency?: number; tenant_id?: string } }>(
      '/v1/eval/runs',
      {
        config: { roles: ['runner'] },
        schema: {
          tags: ['eval'],
          summary:
            "Start an eval run of one of the tenant's agents over a shipped suite, in the background of the server: answers 202 at once with the run's id and the address of its run view; follow it with GET /v1/eval/runs/{run_id}. An existing run_id (same agent and suite) resumes that run. tenant_id: required with a key bound to every tenant.",
          body: {
            type: 'object',
            additionalProperties: false,
            required: ['suite', 'agent_id'],
            properties: {
              suite: SUITE,
              agent_id: AGENT_ID_HEX,
              run_id: RUN_ID,
              concurrency: { type: 'integer', minimum: 1, maximum: 8, default: 2 },
              tenant_id: TENANT_ID,
            },
          },
          response: {
            202: { type: 'object', required: ['run_id', 'status', 'run_url'], properties: { run_id: { type: 'string' }, status: { type: 'string', enum: ['running'] }, run_url: { type: 'string' } } },
            ...startErrors,
          },
        },
      },
      async (req, reply) => {
        const b = req.body;
        const tenantId = tenantOfRead(req, b.tenant_id);
        const runId = b.run_id ?? `web-${new Date().toISOString().replace(/[-:.TZ]/g, '').slice(0, 14)}-${randomBytes(3).toString('hex')}`;
        await startRun({ tenantId, suite: b.suite, agentId: b.agent_id, runId, concurrency: b.concurrency ?? 2 });
        void reply.status(202);
        return { run_id: runId, status: 'running' as const, run_url: `/eval/run?tenant=${encodeURIComponent(tenantId)}&run=${encodeURIComponent(runId)}` };
      },
    );
  }

  app.get<{ Params: { run_id: string }; Querystring: { tenant_id?: string } }>(
    '/v1/eval/runs/:run_id',
    {
      config: { roles: READERS },
      schema: {
        tags: ['eval'],
        summary: "One eval run with every task's status, score, rubric breakdown, logs, errors, cost components (from its cost event) and duration",
        params: { type: 'object', required: ['run_id'], properties: { run_id: RUN_ID } },
        querystring: { type: 'object', additionalProperties: false, properties: { tenant_id: TENANT_ID } },
        response: { 200: { type: 'object', properties: { run: runView, tasks: { type: 'array', items: taskRow } } }, ...errors },
      },
    },
    async (req) => {
      const tenantId = tenantOfRead(req, req.query.tenant_id);
      const run = await opts.results.run(tenantId, req.params.run_id);
      if (!run) throw new ApiError('FORGE_ERR_NOT_FOUND', `eval run ${req.params.run_id} not found`, 'run_id');
      const tasks = await opts.results.tasks(tenantId, run.runId);
      // The cost components of each task, as the collector stored its cost event.
      const events = await opts.store.listEvents({ tenantId, runId: run.runId }, { from: run.startedAt - DAY, to: (run.finishedAt ?? Date.now()) + DAY });
      const byId = new Map(events.map((e) => [e.eventId, e]));
      const taskOut = (t: TaskResultRecord) => {
        const ev = byId.get(t.costEventId);
        const components = ev ? Object.fromEntries(Object.entries(eventComponents(ev)).filter(([, m]) => m !== 0).map(([k, m]) => [k, microsToUsd(m)])) : {};
        return {
          task_id: t.taskId,
          domain: t.domain,
          category: t.category,
          status: t.status,
          passed: t.passed,
          score: t.scoreMilli / 1000,
          checks: t.checks,
          answer: t.answer ?? null,
          logs: t.logs,
          error: t.error,
          exit_code: t.exitCode,
          duration_ms: t.durationMs,
          cost_event_id: t.costEventId,
          cost_total_usd: microsToUsd(ev?.totalMicros ?? t.costTotalMicros),
          cost_components_usd: components,
          finished_at: iso(t.finishedAt),
        };
      };
      return { run: runOut(run), tasks: tasks.map(taskOut) };
    },
  );

  app.get<{ Params: { suite: string }; Querystring: { tenant_id?: string } }>(
    '/v1/eval/leaderboards/:suite',
    {
      config: { roles: READERS },
      schema: {
        tags: ['eval'],
        summary: "A suite's leaderboard over the tenant's runs: pass rate, mean score, cost per successful task, cost per task, time (best first)",
        params: { type: 'object', required: ['suite'], properties: { suite: SUITE } },
        querystring: { type: 'object', additionalProperties: false, properties: { tenant_id: TENANT_ID } },
        response: { 200: board, ...errors },
      },
    },
    async (req) => ({ suite: req.params.suite, rows: boardView(await opts.results.leaderboard(req.params.suite, { tenantId: tenantOfRead(req, req.query.tenant_id) })) }),
  );

  app.get<{ Params: { suite: string } }>(
    '/v1/public/leaderboards/:suite',
    {
      config: { public: true },
      schema: {
        tags: ['eval'],
        summary: "A suite's public leaderboard: published runs of every tenant (no key; tenant ids left out)",
        security: [],
        params: { type: 'object', required: ['suite'], properties: { suite: SUITE } },
        response: { 200: board, 400: errorBodySchema },
      },
    },
    async (req) => ({ suite: req.params.suite, rows: boardView(await opts.results.leaderboard(req.params.suite, { publicOnly: true })) }),
  );
}
