import type { FastifyInstance } from 'fastify';
import type {} from '@fastify/swagger';
import type { AlertDispatcher } from '../../alerts/index.ts';
import { usdToMicrosField, type AuditRecord, type CostBaseline } from '../../guard/index.ts';
import { microsToUsd, usdToMicros, type LlmPriceTable, type ScopeKey } from '../../rules/index.ts';
import { requireTenant } from '../auth.ts';
import { errorBodySchema } from '../errors.ts';
import { principalOf } from '../http.ts';
import { RUN_ID, TENANT_ID, text, USD } from '../schemas.ts';

export interface AnomalyRoutesOptions {
  baseline: Pick<CostBaseline, 'normal'>;
  /** B_unit_cap of a scope, USD micros: the normal cost until a task type has history. */
  unitCapOf: (scope: ScopeKey) => number;
  /** Appends to guardrail_events (audited, chained). */
  audit: (r: AuditRecord) => Promise<void>;
  alerts?: Pick<AlertDispatcher, 'raiseAnomaly'>;
  /** The price book's LLM prices: a fallback is "pricier" when its input + output price per million tokens is higher. */
  llmPrices?: LlmPriceTable;
  now: () => number;
}

/** USD micros of one million input plus one million output tokens of a model, or undefined when unpriced. */
function mtokMicros(prices: LlmPriceTable | undefined, model: string): number | undefined {
  const p = prices?.[model];
  return p ? usdToMicros(String(p.inputPerMTokUsd)) + usdToMicros(String(p.outputPerMTokUsd)) : undefined;
}

const errors = { 400: errorBodySchema, 401: errorBodySchema, 403: errorBodySchema, 404: errorBodySchema };
const TASK_ID = { type: 'string', pattern: '^[A-Za-z0-9._:-]{1,128}$' } as const;

/** Cost anomalies (F-044): the learned normal cost of a task type, and the kills past 3x of it. */
export async function anomalyRoutes(app: FastifyInstance, opts: AnomalyRoutesOptions): Promise<void> {
  app.get<{ Querystring: { tenant_id: string; task_type: string; model?: string } }>(
    '/v1/anomalies/normal-cost',
    {
      config: { roles: ['runner', 'finance', 'oncall', 'auditor'] },
      schema: {
        tags: ['anomalies'],
        summary: 'The normal cost of a task type (median of recent successful tasks, or the unit cap while history is short) and the in-flight ceiling (3x)',
        querystring: { type: 'object', additionalProperties: false, required: ['tenant_id', 'task_type'], properties: { tenant_id: TENANT_ID, task_type: text(1, 128), model: text(1, 128) } },
        response: {
          200: { type: 'object', properties: { normal_usd: { type: 'string' }, ceiling_usd: { type: 'string' }, source: { type: 'string', enum: ['median', 'unit_cap'] }, samples: { type: 'integer' }, factor: { type: 'number' } } },
          ...errors,
        },
      },
    },
    async (req) => {
      const q = req.query;
      requireTenant(principalOf(req), q.tenant_id);
      const n = opts.baseline.normal(q.tenant_id, q.task_type, opts.unitCapOf(`tenant:${q.tenant_id}`), q.model ?? '');
      return { normal_usd: microsToUsd(n.normalMicros), ceiling_usd: microsToUsd(n.ceilingMicros), source: n.source, samples: n.samples, factor: n.factor };
    },
  );

  app.post<{ Body: { tenant_id: string; run_id: string; task_id: string; from_model: string; to_model: string } }>(
    '/v1/anomalies/model-fallback',
    {
      config: { roles: ['runner'] },
      schema: {
        tags: ['anomalies'],
        summary: 'A task fell back to another model: when the fallback is pricier (price book), it is audited and the user notified (routes.anomaly)',
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['tenant_id', 'run_id', 'task_id', 'from_model', 'to_model'],
          properties: { tenant_id: TENANT_ID, run_id: RUN_ID, task_id: TASK_ID, from_model: text(1, 128), to_model: text(1, 128) },
        },
        response: { 202: { type: 'object', properties: { pricier: { type: 'boolean' }, from_mtok_usd: { type: ['string', 'null'] }, to_mtok_usd: { type: ['string', 'null'] }, alerted: { type: 'boolean' } } }, ...errors },
      },
    },
    async (req, reply) => {
      const b = req.body;
      requireTenant(principalOf(req), b.tenant_id);
      const from = mtokMicros(opts.llmPrices, b.from_model);
      const to = mtokMicros(opts.llmPrices, b.to_model);
      void reply.status(202);
      // An unpriced model is not judged: the collector refuses its tokens anyway.
      const pricier = from !== undefined && to !== undefined && to > from;
      let alerted = false;
      if (pricier) {
        const at = opts.now();
        await opts.audit({
          eventId: `anomaly:model_fallback:${b.tenant_id}:${b.run_id}:${b.task_id}`,
          kind: 'anomaly',
          scope: `run:${b.tenant_id}/${b.run_id}`,
          at,
          actor: `key:${principalOf(req).name}`,
          reason: `model_fallback: task ${b.task_id} fell back from ${b.from_model} to pricier ${b.to_model}`,
          details: { anomaly: 'model_fallback', task_id: b.task_id, from_model: b.from_model, to_model: b.to_model, from_mtok_micros: from, to_mtok_micros: to },
        });
        const r = await opts.alerts?.raiseAnomaly({ kind: 'anomaly', anomaly: 'model_fallback', tenantId: b.tenant_id, runId: b.run_id, subject: `${b.from_model}>${b.to_model}`.replace(/[^A-Za-z0-9._:/@>-]/g, '_').slice(0, 200), value: to, threshold: from, unit: 'usd_micros', detail: `task ${b.task_id}: per 1M input + 1M output tokens`, at });
        alerted = r?.outcome === 'dispatched';
      }
      return { pricier, from_mtok_usd: from === undefined ? null : microsToUsd(from), to_mtok_usd: to === undefined ? null : microsToUsd(to), alerted };
    },
  );

  app.post<{ Body: { tenant_id: string; run_id: string; task_id: string; task_type: string; cost_so_far_usd: string | number; ceiling_usd: string | number; normal_usd: string | number } }>(
    '/v1/anomalies/cost-kill',
    {
      config: { roles: ['runner'] },
      schema: {
        tags: ['anomalies'],
        summary: 'A runner killed a task whose in-flight cost passed its ceiling: audited as a guardrail event and alerted (routes.anomaly)',
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['tenant_id', 'run_id', 'task_id', 'task_type', 'cost_so_far_usd', 'ceiling_usd', 'normal_usd'],
          properties: { tenant_id: TENANT_ID, run_id: RUN_ID, task_id: TASK_ID, task_type: text(1, 128), cost_so_far_usd: USD, ceiling_usd: USD, normal_usd: USD },
        },
        response: { 202: { type: 'object', properties: { audited: { type: 'boolean' }, alerted: { type: 'boolean' } } }, ...errors },
      },
    },
    async (req, reply) => {
      const b = req.body;
      requireTenant(principalOf(req), b.tenant_id);
      const soFar = usdToMicrosField(b.cost_so_far_usd, 'cost_so_far_usd');
      const ceiling = usdToMicrosField(b.ceiling_usd, 'ceiling_usd');
      const normal = usdToMicrosField(b.normal_usd, 'normal_usd');
      const at = opts.now();
      const scope: ScopeKey = `run:${b.tenant_id}/${b.run_id}`;
      // One audit row per killed task: a retried report keeps one (the event id is the task's).
      await opts.audit({
        eventId: `anomaly:cost_kill:${b.tenant_id}:${b.run_id}:${b.task_id}`,
        kind: 'anomaly',
        scope,
        at,
        actor: `key:${principalOf(req).name}`,
        reason: `cost_kill: task ${b.task_id} at $${microsToUsd(soFar)} passed $${microsToUsd(ceiling)} (3 x normal $${microsToUsd(normal)})`,
        details: { anomaly: 'cost_kill', task_id: b.task_id, task_type: b.task_type, cost_so_far_micros: soFar, ceiling_micros: ceiling, normal_micros: normal },
      });
      const r = await opts.alerts?.raiseAnomaly({ kind: 'anomaly', anomaly: 'cost_kill', tenantId: b.tenant_id, runId: b.run_id, subject: b.task_id, value: soFar, threshold: ceiling, unit: 'usd_micros', detail: `task type ${b.task_type}, normal $${microsToUsd(normal)}`, at });
      void reply.status(202);
      return { audited: true, alerted: r?.outcome === 'dispatched' };
    },
  );
}
