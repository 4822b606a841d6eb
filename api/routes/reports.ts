import type {} from '@fastify/swagger';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { COMPONENTS, microsToUsd, type ScopeKey } from '../../rules/index.ts';
import { focusCsv, focusRows, logScopeOf, type BreakdownRow, type ChainLog, type LogScope, type Store, type Totals, type StreamsVerifyResult } from '../../store/index.ts';
import { requireTenant } from '../auth.ts';
import { ApiError, errorBodySchema } from '../errors.ts';
import type { Guardrail } from '../../guard/index.ts';
import { principalOf, scopeParam } from '../http.ts';
import { DATE_TIME, RUN_ID, SCOPE, TENANT_ID } from '../schemas.ts';
import { timeField } from '../time.ts';
import { reportPanelRoutes } from './report-panels.ts';

const DAY = 86_400_000;
const errors = { 400: errorBodySchema, 401: errorBodySchema, 403: errorBodySchema, 404: errorBodySchema };

type Row = Record<string, string | number | null>;
interface Report {
  scope: ScopeKey;
  generated_at: string;
  columns: string[];
  rows: Row[];
  summary?: Row;
}

const csvCell = (v: string | number | null): string => {
  const s = v === null ? '' : String(v);
  // Quote when needed, and defuse spreadsheet formulas.
  const safe = /^[=+\-@]/.test(s) && !/^-?\d/.test(s) ? `'${s}` : s;
  return /[",\n]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
};

export function toCsv(r: Report): string {
  return [r.columns.join(','), ...r.rows.map((row) => r.columns.map((c) => csvCell(row[c] ?? null)).join(','))].join('\n') + '\n';
}

const perTask = (t: Totals) => ({
  cost_per_task_usd: t.tasks > 0 ? microsToUsd(Math.floor(t.totalMicros / t.tasks)) : null,
  cost_per_success_usd: t.succeeded > 0 ? microsToUsd(Math.floor(t.totalMicros / t.succeeded)) : null,
});

export const REPORTS = ['daily-burn', 'composition', 'unit-economics', 'weekly-burn', 'utilisation', 'runway', 'efficiency', 'stop-conditions'] as const;
type ReportName = (typeof REPORTS)[number];

/** Finance reports over the event log (the source of truth), JSON or CSV. */
export async function reportRoutes(app: FastifyInstance, opts: { store: Store; guardrail: Guardrail; now: () => number }): Promise<void> {
  const { store, guardrail } = opts;

  async function build(name: ReportName, scope: ScopeKey, ls: LogScope, days: number): Promise<Report> {
    const now = opts.now();
    const b = guardrail.bandsFor(scope);
    const base = { scope, generated_at: new Date(now).toISOString() };
    const range = { from: now - days * DAY, to: now + 1 };
    switch (name) {
      case 'daily-burn': {
        const d = await store.dailyTotals(ls, now, days);
        return { ...base, columns: ['day', 'total_usd', 'day_soft_usd', 'day_hard_usd', 'tasks', 'failed'], rows: d.map((x) => ({ day: x.day, total_usd: microsToUsd(x.totalMicros), day_soft_usd: microsToUsd(b.daySoft), day_hard_usd: microsToUsd(b.dayHard), tasks: x.tasks, failed: x.failed })) };
      }
      case 'composition': {
        const c = await store.composition(ls, range);
        const rows = COMPONENTS.map((k) => ({ component: k, usd: microsToUsd(c.components[k]), share: Math.round(c.shares[k] * 10_000) / 10_000 }));
        return { ...base, columns: ['component', 'usd', 'share'], rows, summary: { total_usd: microsToUsd(c.totalMicros), days } };
      }
      case 'unit-economics': {
        const d = await store.dailyTotals(ls, now, days);
        return { ...base, columns: ['day', 'total_usd', 'tasks', 'succeeded', 'cost_per_task_usd', 'cost_per_success_usd'], rows: d.map((x) => ({ day: x.day, total_usd: microsToUsd(x.totalMicros), tasks: x.tasks, succeeded: x.succeeded, ...perTask(x) })) };
      }
      case 'weekly-burn': {
        const w = await store.weeklyTotals(ls, now, Math.max(1, Math.ceil(days / 7)));
        return { ...base, columns: ['week_start', 'total_usd', 'week_soft_usd', 'week_hard_usd', 'tasks'], rows: w.map((x) => ({ week_start: x.weekStart, total_usd: microsToUsd(x.totalMicros), week_soft_usd: microsToUsd(b.weekSoft), week_hard_usd: microsToUsd(b.weekHard), tasks: x.tasks })) };
      }
      case 'utilisation':
      case 'runway': {
        const run = await store.cumulativeTotal(ls, now);
        const week = await store.rollingWeekTotal(ls, now);
        const remaining = Math.max(0, b.runCap - run.totalMicros);
        const avgDay = Math.floor(week.totalMicros / 7);
        const row: Row = {
          run_spend_usd: microsToUsd(run.totalMicros),
          run_cap_usd: microsToUsd(b.runCap),
          utilisation: b.runCap > 0 ? Math.round((run.totalMicros / b.runCap) * 10_000) / 10_000 : null,
          remaining_usd: microsToUsd(remaining),
          avg_daily_burn_7d_usd: microsToUsd(avgDay),
          runway_days: avgDay > 0 ? Math.round((remaining / avgDay) * 100) / 100 : null,
        };
        return { ...base, columns: Object.keys(row), rows: [row] };
      }
      case 'efficiency': {
        const rows: Row[] = [];
        for (const by of ['task_type', 'model', 'environment'] as const) {
          const list: BreakdownRow[] = await store.breakdown(ls, range, by);
          for (const x of list) rows.push({ dimension: by, key: x.key, total_usd: microsToUsd(x.totalMicros), tasks: x.tasks, succeeded: x.succeeded, failed: x.failed, ...perTask(x) });
        }
        return { ...base, columns: ['dimension', 'key', 'total_usd', 'tasks', 'succeeded', 'failed', 'cost_per_task_usd', 'cost_per_success_usd'], rows };
      }
      case 'stop-conditions': {
        // This scope's own state changes (a tenant's runs have their own scopes).
        const events = await store.guardrailEvents({ scope: ls, scopeKey: scope, from: now - DAY, to: now + 1, kinds: ['state_change'] });
        const c = { WARNING: 0, HARD_STOP: 0, EMERGENCY_STOP: 0 };
        for (const e of events) if (e.state in c) c[e.state as keyof typeof c]++;
        return { ...base, columns: ['state', 'count'], rows: (['WARNING', 'HARD_STOP', 'EMERGENCY_STOP'] as const).map((s) => ({ state: s, count: c[s] })) };
      }
    }
  }

  app.get<{ Params: { report: ReportName }; Querystring: { scope: string; days?: number; format?: 'json' | 'csv' } }>(
    '/v1/reports/:report',
    {
      config: { roles: ['finance'] },
      schema: {
        tags: ['reports'],
        summary: 'Finance reports: daily-burn, composition, unit-economics, weekly-burn, utilisation, runway, efficiency, stop-conditions (JSON or CSV)',
        params: { type: 'object', additionalProperties: false, required: ['report'], properties: { report: { type: 'string', enum: [...REPORTS] } } },
        querystring: {
          type: 'object',
          additionalProperties: false,
          required: ['scope'],
          properties: { scope: SCOPE, days: { type: 'integer', minimum: 1, maximum: 366, default: 30 }, format: { type: 'string', enum: ['json', 'csv'], default: 'json' } },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              scope: { type: 'string' }, generated_at: { type: 'string' }, columns: { type: 'array', items: { type: 'string' } },
              rows: { type: 'array', items: { type: 'object', additionalProperties: { type: ['string', 'number', 'null'] } } },
              summary: { type: 'object', additionalProperties: { type: ['string', 'number', 'null'] } },
            },
          },
          ...errors,
        },
      },
    },
    async (req, reply) => {
      const scope = scopeParam(req, req.query.scope);
      const ls = logScopeOf(scope)!;
      const r = await build(req.params.report, scope, ls, req.query.days ?? 30);
      if (req.query.format === 'csv') {
        void reply.type('text/csv; charset=utf-8').header('content-disposition', `attachment; filename="forge-${req.params.report}.csv"`);
        return reply.send(toCsv(r));
      }
      return r;
    },
  );

  const FOCUS_MAX_EVENTS = 1_000_000;
  app.get<{ Querystring: { scope: string; from?: string; to?: string } }>(
    '/v1/reports/focus',
    {
      config: { roles: ['finance'] },
      schema: {
        tags: ['reports'],
        summary: 'The cost log as a FOCUS 1.3 Cost and Usage dataset (CSV): one row per task and cost component, x_TenantId, x_RunId, x_TaskId, x_AgentId, x_CostComponent',
        description: 'Event time in [from, to) (default: the 30 days ending now; at most 366 days). BilledCost sums to the log\'s total to the micro-dollar.',
        querystring: { type: 'object', additionalProperties: false, required: ['scope'], properties: { scope: SCOPE, from: DATE_TIME, to: DATE_TIME } },
        response: { 200: { type: 'string' }, ...errors },
      },
    },
    async (req, reply) => {
      const scope = scopeParam(req, req.query.scope);
      const range = timeRange(req, opts.now(), 30);
      const events = await store.listEvents(logScopeOf(scope)!, range, { limit: FOCUS_MAX_EVENTS });
      if (events.length === FOCUS_MAX_EVENTS) throw new ApiError('FORGE_ERR_VALIDATION', `more than ${FOCUS_MAX_EVENTS} events in the range: ask for a shorter one`, 'from');
      void reply.type('text/csv; charset=utf-8').header('content-disposition', 'attachment; filename="forge-focus.csv"');
      return reply.send(focusCsv(focusRows(events)));
    },
  );

  await reportPanelRoutes(app, { store, now: opts.now });
  await auditRoutes(app, store, opts.now);
}

function timeRange(req: FastifyRequest<{ Querystring: { from?: string; to?: string } }>, now: number, maxDays: number): { from: number; to: number } {
  const to = req.query.to ? timeField(req.query.to, 'to', now) : now + 1;
  const from = req.query.from ? timeField(req.query.from, 'from', now) : to - maxDays * DAY;
  if (from >= to) throw new ApiError('FORGE_ERR_VALIDATION', 'from must be before to', 'from');
  if (to - from > 366 * DAY) throw new ApiError('FORGE_ERR_VALIDATION', 'the time range may span at most 366 days', 'from');
  return { from, to };
}

/** The auditor's view: events by tenant, run and time; hash-chain verification; guardrail history. */
async function auditRoutes(app: FastifyInstance, store: Store, now: () => number): Promise<void> {
  const tenantQuery = {
    type: 'object',
    additionalProperties: false,
    required: ['tenant_id'],
    properties: {
      tenant_id: TENANT_ID,
      run_id: RUN_ID,
      from: DATE_TIME,
      to: DATE_TIME,
      limit: { type: 'integer', minimum: 1, maximum: 10_000, default: 1000 },
    },
  } as const;

  app.get<{ Querystring: { tenant_id: string; run_id?: string; from?: string; to?: string; limit?: number } }>(
    '/v1/audit/events',
    { config: { roles: ['auditor'] }, schema: { tags: ['audit'], summary: 'Cost events of a tenant (and run) in a time range, in event-time order, with their chain hashes', querystring: tenantQuery, response: errors } },
    async (req) => {
      requireTenant(principalOf(req), req.query.tenant_id);
      const range = timeRange(req, now(), 31);
      const events = await store.listEvents({ tenantId: req.query.tenant_id, ...(req.query.run_id ? { runId: req.query.run_id } : {}) }, range, { limit: req.query.limit ?? 1000 });
      return { tenant_id: req.query.tenant_id, from: new Date(range.from).toISOString(), to: new Date(range.to).toISOString(), count: events.length, events };
    },
  );

  app.get<{ Querystring: { tenant_id?: string; from?: string; to?: string } }>(
    '/v1/audit/verify',
    {
      config: { roles: ['auditor'] },
      schema: {
        tags: ['audit'],
        summary: 'Walk the tenant\'s hash chains (cost_events and guardrail_events; without tenant_id the global guardrail stream) to their recorded heads; report the first broken link per stream of each log (one stream per writer process)',
        querystring: { type: 'object', additionalProperties: false, properties: { tenant_id: TENANT_ID, from: DATE_TIME, to: DATE_TIME } },
        response: errors,
      },
    },
    async (req) => {
      const tenantId = req.query.tenant_id;
      if (tenantId === undefined) scopeParam(req, 'global');
      else requireTenant(principalOf(req), tenantId);
      const t = now();
      const from = req.query.from ? timeField(req.query.from, 'from', t) : undefined;
      const to = req.query.to ? timeField(req.query.to, 'to', t) : undefined;
      if (from !== undefined && to !== undefined && from >= to) throw new ApiError('FORGE_ERR_VALIDATION', 'from must be before to', 'from');
      const range = { ...(from !== undefined ? { from } : {}), ...(to !== undefined ? { to } : {}) };
      // Each log holds one chain per writer process's stream of the tenant: every stream is walked.
      const logs: Partial<Record<ChainLog, StreamsVerifyResult>> = {};
      if (tenantId !== undefined) logs.cost_events = await store.verifyStreams({ log: 'cost_events', tenantId, ...range });
      logs.guardrail_events = await store.verifyStreams({ log: 'guardrail_events', tenantId: tenantId ?? '', ...range });
      return { ok: Object.values(logs).every((v) => v.ok), tenant_id: tenantId ?? null, logs };
    },
  );

  app.get<{ Querystring: { scope: string; from?: string; to?: string } }>(
    '/v1/audit/guardrail-events',
    {
      config: { roles: ['auditor', 'oncall'] },
      schema: {
        tags: ['audit'],
        summary: 'State changes, acknowledgements, overrides, budget changes and expired reservations of a scope',
        querystring: { type: 'object', additionalProperties: false, required: ['scope'], properties: { scope: SCOPE, from: DATE_TIME, to: DATE_TIME } },
        response: errors,
      },
    },
    async (req: FastifyRequest<{ Querystring: { scope: string; from?: string; to?: string } }>, _reply: FastifyReply) => {
      const scope = scopeParam(req, req.query.scope);
      const range = timeRange(req, now(), 31);
      const rows = await store.guardrailEvents({ scope: logScopeOf(scope)!, ...range, scopeKey: scope, limit: 1000 });
      return { scope, events: rows };
    },
  );
}
