import type { FastifyInstance } from 'fastify';
import { invoiceCsv, invoiceHtml, monthKey, type Invoice, type UsageBilling } from '../../../billing/index.ts';
import { microsToUsd } from '../../../rules/index.ts';
import { ApiError, errorBodySchema } from '../../errors.ts';
import { closed, e4, e5, MONTH, tenantParams, TENANT, type BillingRouteContext } from './shared.ts';

const S = { type: 'string' } as const;
const I = { type: 'integer' } as const;
const detailView = { type: 'object', properties: { key: S, executions: I, input_tokens: I, output_tokens: I, price_usd: S, cost_usd: S } } as const;
const invoiceView = {
  type: 'object',
  properties: {
    tenant_id: S, month: S, final: { type: 'boolean' }, plan_id: S, executions: I, subtotal_usd: S, credits_applied_usd: S, total_usd: S, total_micros: I,
    lines: {
      type: 'array',
      items: {
        type: 'object',
        properties: { id: S, kind: S, description: S, quantity: I, unit_usd: { type: ['string', 'null'] }, amount_usd: S, amount_micros: I, model: S, skill: S, input_tokens: I, output_tokens: I, cost_usd: S },
      },
    },
    by_agent: { type: 'array', items: detailView },
    by_day: { type: 'array', items: detailView },
    unpriced: { type: 'array', items: { type: 'object', properties: { model: S, input_tokens: I, output_tokens: I } } },
    notices: { type: 'array', items: { type: 'object', properties: { code: S, message: S } } },
  },
} as const;
const monthParams = closed({ tenant: TENANT, month: MONTH }, ['tenant', 'month'] as const);

function invoiceJson(inv: Invoice, final: boolean) {
  const d = (x: Invoice['byAgent'][number]) => ({ key: x.key, executions: x.executions, input_tokens: x.inputTokens, output_tokens: x.outputTokens, price_usd: microsToUsd(x.priceMicros), cost_usd: microsToUsd(x.costMicros) });
  return {
    tenant_id: inv.tenantId, month: inv.month, final, plan_id: inv.planId, executions: inv.executions, subtotal_usd: microsToUsd(inv.subtotalMicros),
    credits_applied_usd: microsToUsd(inv.creditsAppliedMicros), total_usd: microsToUsd(inv.totalMicros), total_micros: inv.totalMicros,
    lines: inv.lines.map((l) => ({
      id: l.id, kind: l.kind, description: l.description, quantity: l.quantity, unit_usd: l.unitMicros === null ? null : microsToUsd(l.unitMicros), amount_usd: microsToUsd(l.amountMicros), amount_micros: l.amountMicros,
      ...(l.model ? { model: l.model } : {}), ...(l.skill ? { skill: l.skill } : {}), ...(l.inputTokens !== undefined ? { input_tokens: l.inputTokens, output_tokens: l.outputTokens } : {}),
      ...(l.costMicros !== undefined ? { cost_usd: microsToUsd(l.costMicros) } : {}),
    })),
    by_agent: inv.byAgent.map(d), by_day: inv.byDay.map(d),
    unpriced: inv.unpriced.map((u) => ({ model: u.model, input_tokens: u.inputTokens, output_tokens: u.outputTokens })), notices: inv.notices,
  };
}

/** Invoices (JSON, CSV, printable HTML), prepaid dollars, commitments, the price book, creator statements and payouts. */
export function invoiceRoutes(app: FastifyInstance, ctx: BillingRouteContext, billing: UsageBilling): void {
  const { now, tenantOf } = ctx;

  app.get(
    '/v1/billing/price-book',
    {
      config: { roles: ['runner', 'finance', 'oncall', 'auditor'] },
      schema: {
        tags: ['billing'],
        summary: 'The token price book: per model and per 1M tokens, our cost and the user price (input, output), with the date each entry applies from',
        response: { 200: { type: 'object', properties: { entries: { type: 'array', items: { type: 'object', properties: { model: S, provider: S, effective_from: S, cost_input_usd: S, cost_output_usd: S, price_input_usd: S, price_output_usd: S } } } } }, ...e4 },
      },
    },
    async () => ({
      entries: billing.pricing.priceBook.map((e) => ({
        model: e.model, provider: e.provider, effective_from: new Date(e.effectiveFrom).toISOString(), cost_input_usd: microsToUsd(e.cost.input), cost_output_usd: microsToUsd(e.cost.output),
        price_input_usd: microsToUsd(e.price.input), price_output_usd: microsToUsd(e.price.output),
      })),
    }),
  );

  app.get<{ Params: { tenant: string; month: string }; Querystring: { format?: 'json' | 'csv' | 'html' } }>(
    '/v1/billing/tenants/:tenant/invoices/:month',
    {
      config: { roles: ['finance', 'auditor'] },
      schema: {
        tags: ['billing'],
        summary: 'A month\'s invoice: lines per model, overage, Pay As You Go or commitment, premium skills, prepaid credits; detail per agent and per day (JSON, CSV or printable HTML). A draft until finalized.',
        params: monthParams,
        querystring: closed({ format: { type: 'string', enum: ['json', 'csv', 'html'], default: 'json' } }),
        response: { 200: invoiceView, ...e4, ...e5 },
      },
    },
    async (req, reply) => {
      const tenant = tenantOf(req, req.params.tenant);
      const { invoice, final } = await billing.invoice(tenant, req.params.month, now());
      if (req.query.format === 'csv') {
        void reply.type('text/csv; charset=utf-8').header('content-disposition', `attachment; filename="forge-invoice-${tenant}-${invoice.month}.csv"`);
        return reply.send(invoiceCsv(invoice));
      }
      if (req.query.format === 'html') {
        void reply.type('text/html; charset=utf-8').header('content-security-policy', "default-src 'none'; style-src 'unsafe-inline'");
        return reply.send(invoiceHtml(invoice));
      }
      return invoiceJson(invoice, final);
    },
  );

  app.post<{ Params: { tenant: string; month: string } }>(
    '/v1/billing/tenants/:tenant/invoices/:month/finalize',
    {
      config: { roles: ['finance'] },
      schema: {
        tags: ['billing'],
        summary: 'Finalize a closed month\'s invoice (once: prepaid credits are taken then) and, with Stripe on and a Stripe customer, report its lines as invoice items, each once',
        params: monthParams,
        body: { type: ['object', 'null'], additionalProperties: false, properties: {} },
        response: { 200: { type: 'object', properties: { invoice: invoiceView, stripe: { type: 'object', properties: { sent: I, skipped: I } } } }, ...e4, 409: errorBodySchema, ...e5 },
      },
    },
    async (req) => {
      const tenant = tenantOf(req, req.params.tenant);
      ctx.requirePlatformKey(req, 'finalizing an invoice is the platform\'s act: it needs a finance key bound to all tenants');
      const t = now();
      // Reported to Stripe when the team is a Stripe customer; a team billed otherwise is finalized only.
      if (ctx.stripe && (await ctx.service.account(tenant, t)).customerId) {
        const r = await billing.reportToStripe(tenant, req.params.month, t);
        return { invoice: invoiceJson(r.invoice, true), stripe: { sent: r.sent, skipped: r.skipped } };
      }
      return { invoice: invoiceJson(await billing.finalize(tenant, req.params.month, t), true) };
    },
  );

  app.get<{ Params: { tenant: string } }>(
    '/v1/billing/tenants/:tenant/prepaid',
    {
      config: { roles: ['runner', 'finance', 'auditor'] },
      schema: {
        tags: ['billing'],
        summary: 'Prepaid dollars: the balance, the entries (purchases and bonus from Stripe Checkout, what invoices used) and the offers',
        params: tenantParams,
        response: {
          200: {
            type: 'object',
            properties: {
              tenant_id: S, balance_usd: S,
              entries: { type: 'array', items: { type: 'object', properties: { entry_id: S, kind: S, amount_usd: S, at: S, ref: S } } },
              offers: { type: 'array', items: { type: 'object', properties: { id: S, pay_usd: S, credit_usd: S } } },
            },
          },
          ...e4,
          ...e5,
        },
      },
    },
    async (req) => {
      const tenant = tenantOf(req, req.params.tenant);
      const entries = await billing.prepaidEntries(tenant);
      return {
        tenant_id: tenant, balance_usd: microsToUsd(entries.reduce((s, e) => s + e.amountMicros, 0)),
        entries: entries.map((e) => ({ entry_id: e.entryId, kind: e.kind, amount_usd: microsToUsd(e.amountMicros), at: new Date(e.at).toISOString(), ref: e.ref })),
        offers: Object.values(billing.pricing.prepaidOffers).map((o) => ({ id: o.id, pay_usd: microsToUsd(o.payMicros), credit_usd: microsToUsd(o.creditMicros) })),
      };
    },
  );

  const commitmentView = { type: 'object', properties: { tenant_id: S, executions_per_month: I, start_month: S, term_months: I, discount_percent: I, active: { type: 'boolean' } } } as const;
  const commitmentJson = (c: { tenantId: string; executionsPerMonth: number; startMonth: string; termMonths: number }, active: boolean) => ({
    tenant_id: c.tenantId, executions_per_month: c.executionsPerMonth, start_month: c.startMonth, term_months: c.termMonths, discount_percent: billing.discountPercent(c.executionsPerMonth), active,
  });

  app.put<{ Params: { tenant: string }; Body: { executions_per_month: number; start_month: string; term_months: number } }>(
    '/v1/billing/tenants/:tenant/commitment',
    {
      config: { roles: ['finance'] },
      schema: {
        tags: ['billing'],
        summary: 'Commit a team to executions per month (100K: 20% off, 500K: 35%, 1M+: 45%) for at least 12 months; a running commitment may be raised, not lowered',
        params: tenantParams,
        body: closed({ executions_per_month: { type: 'integer', minimum: 1, maximum: 1_000_000_000 }, start_month: MONTH, term_months: { type: 'integer', minimum: 1, maximum: 120 } }, ['executions_per_month', 'start_month', 'term_months'] as const),
        response: { 200: commitmentView, ...e4, 409: errorBodySchema, ...e5 },
      },
    },
    async (req) => {
      const tenant = tenantOf(req, req.params.tenant);
      ctx.requirePlatformKey(req, 'a commitment is a contract of the platform\'s: it needs a finance key bound to all tenants');
      const t = now();
      const c = await billing.setCommitment(tenant, { executionsPerMonth: req.body.executions_per_month, startMonth: req.body.start_month, termMonths: req.body.term_months }, t);
      return commitmentJson(c, (await billing.activeCommitment(tenant, monthKey(t))) !== undefined);
    },
  );

  app.get<{ Params: { tenant: string } }>(
    '/v1/billing/tenants/:tenant/commitment',
    { config: { roles: ['finance', 'auditor'] }, schema: { tags: ['billing'], summary: 'The team\'s commitment, if any', params: tenantParams, response: { 200: commitmentView, ...e4, ...e5 } } },
    async (req) => {
      const tenant = tenantOf(req, req.params.tenant);
      const t = now();
      const c = await billing.commitment(tenant);
      if (!c) throw new ApiError('FORGE_ERR_NOT_FOUND', 'no commitment for this team', 'tenant');
      return commitmentJson(c, (await billing.activeCommitment(tenant, monthKey(t))) !== undefined);
    },
  );

  const statementView = {
    type: 'object',
    properties: {
      creator: S, month: S, earned_usd: S,
      lines: { type: 'array', items: { type: 'object', properties: { tenant_id: S, skill: S, mode: S, executions: I, revenue_usd: S, creator_usd: S } } },
    },
  } as const;
  app.get<{ Querystring: { month: string } }>(
    '/v1/billing/creators/statements',
    {
      config: { roles: ['finance'] },
      schema: { tags: ['billing'], summary: 'Creator statements of a month: what each premium skill\'s creator earned from the finalized invoices', querystring: closed({ month: MONTH }, ['month'] as const), response: { 200: { type: 'object', properties: { statements: { type: 'array', items: statementView } } }, ...e4, ...e5 } },
    },
    async (req) => {
      ctx.requirePlatformKey(req, 'creator statements cover every tenant: they need a key bound to all tenants');
      const st = await billing.creatorStatements(req.query.month, (await ctx.accounts.list()).map((a) => a.tenantId));
      return {
        statements: st.map((s) => ({
          creator: s.creator, month: s.month, earned_usd: microsToUsd(s.earnedMicros),
          lines: s.lines.map((l) => ({ tenant_id: l.tenantId, skill: l.skill, mode: l.mode, executions: l.executions, revenue_usd: microsToUsd(l.revenueMicros), creator_usd: microsToUsd(l.creatorMicros) })),
        })),
      };
    },
  );

  app.post<{ Body: { month: string } }>(
    '/v1/billing/creators/payouts',
    {
      config: { roles: ['finance'] },
      schema: {
        tags: ['billing'],
        summary: 'Pay creators for a closed month through Stripe Connect transfers: 25 USD minimum, a smaller balance carried over, never paid twice',
        body: closed({ month: MONTH }, ['month'] as const),
        response: { 200: { type: 'object', properties: { payouts: { type: 'array', items: { type: 'object', properties: { creator: S, month: S, earned_usd: S, carried_in_usd: S, paid_usd: S, carry_out_usd: S, transfer_id: S } } } } }, ...e4, 409: errorBodySchema, ...e5 },
      },
    },
    async (req) => {
      ctx.requirePlatformKey(req, 'payouts cover every tenant: they need a finance key bound to all tenants');
      const rows = await billing.payCreators(req.body.month, (await ctx.accounts.list()).map((a) => a.tenantId), now());
      return {
        payouts: rows.map((p) => ({ creator: p.creator, month: p.month, earned_usd: microsToUsd(p.earnedMicros), carried_in_usd: microsToUsd(p.carriedInMicros), paid_usd: microsToUsd(p.paidMicros), carry_out_usd: microsToUsd(p.carryOutMicros), transfer_id: p.transferId })),
      };
    },
  );
}
