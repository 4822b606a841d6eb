import type { FastifyInstance } from 'fastify';
import { financeReport } from '../../../billing/index.ts';
import { microsToUsd } from '../../../rules/index.ts';
import { toCsv } from '../reports.ts';
import { closed, e4, e5, monthRange, MONTH, type BillingRouteContext } from './shared.ts';

const MARGIN_COLUMNS = ['plan_id', 'tenants', 'seats', 'custom_priced', 'revenue_usd', 'llm_cost_usd', 'margin_usd', 'margin_ratio'];
const reportRow = { type: 'object', additionalProperties: { type: ['string', 'number', 'null'] } } as const;

/** Finance reports over every tenant: the margin per tier. */
export function billingReportRoutes(app: FastifyInstance, ctx: BillingRouteContext): void {
  app.get<{ Querystring: { month?: string; format?: 'json' | 'csv' } }>(
    '/v1/billing/reports/margin',
    {
      config: { roles: ['finance'] },
      schema: {
        tags: ['billing', 'reports'],
        summary: 'Margin per tier for a UTC month: subscription price (standard or BYOK, per seat) vs LLM cost from the event log (JSON or CSV; a key bound to all tenants)',
        querystring: closed({ month: MONTH, format: { type: 'string', enum: ['json', 'csv'], default: 'json' } }),
        response: { 200: { type: 'object', properties: { generated_at: { type: 'string' }, from: { type: 'string' }, to: { type: 'string' }, columns: { type: 'array', items: { type: 'string' } }, rows: { type: 'array', items: reportRow }, summary: reportRow } }, ...e4, ...e5 },
      },
    },
    async (req, reply) => {
      ctx.requirePlatformKey(req, 'the margin report covers every tenant: it needs a key bound to all tenants');
      const t = ctx.now();
      const { from, to } = monthRange(req.query.month, t);
      const r = await financeReport(ctx.catalog, await ctx.accounts.list(), ctx.usage, { from, to });
      const row = (id: string, x: Omit<(typeof r.rows)[number], 'planId'>) => ({
        plan_id: id, tenants: x.tenants, seats: x.seats, custom_priced: x.customPriced, revenue_usd: microsToUsd(x.revenueMicros), llm_cost_usd: microsToUsd(x.llmCostMicros),
        margin_usd: microsToUsd(x.marginMicros), margin_ratio: x.marginRatio,
      });
      const rows = r.rows.map((x) => row(x.planId, x));
      const total = row('total', r.total);
      const base = { generated_at: new Date(t).toISOString(), from: new Date(from).toISOString(), to: new Date(to).toISOString(), columns: MARGIN_COLUMNS };
      if (req.query.format === 'csv') {
        void reply.type('text/csv; charset=utf-8').header('content-disposition', `attachment; filename="forge-margin-${base.from.slice(0, 7)}.csv"`);
        return reply.send(toCsv({ scope: 'global', ...base, rows: [...rows, total] }));
      }
      return { ...base, rows, summary: total };
    },
  );
}
