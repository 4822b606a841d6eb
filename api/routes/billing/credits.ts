import type { FastifyInstance } from 'fastify';
import { creditStatement } from '../../../billing/index.ts';
import { microsToUsd } from '../../../rules/index.ts';
import { timeField } from '../../time.ts';
import { balanceJson, balanceView, closed, DATE, e4, e5, tenantParams, type BillingRouteContext } from './shared.ts';

export const PURCHASE_ID = { type: 'string', pattern: '^[A-Za-z0-9._:@/-]{1,128}$' } as const;

/** Credits: the balance, a paid pack recorded by the platform, the ledger's entries. */
export function creditRoutes(app: FastifyInstance, ctx: BillingRouteContext): void {
  const { catalog, service, ledger, now, tenantOf } = ctx;

  app.get<{ Params: { tenant: string } }>(
    '/v1/billing/tenants/:tenant/credits',
    { config: { roles: ['runner', 'finance', 'auditor'] }, schema: { tags: ['billing'], summary: 'Credit balance: available, held by open executions, free runs left this month', params: tenantParams, response: { 200: balanceView, ...e4, ...e5 } } },
    async (req) => {
      const tenant = tenantOf(req, req.params.tenant);
      return balanceJson(tenant, await ledger.balance(tenant, now()));
    },
  );

  app.post<{ Params: { tenant: string }; Body: { pack: string; purchase_id: string } }>(
    '/v1/billing/tenants/:tenant/credits/purchases',
    {
      config: { roles: ['finance'] },
      schema: {
        tags: ['billing'],
        summary: 'Credit a paid credit pack (purchase_id: the payment\'s id, e.g. a Stripe PaymentIntent; the same id again credits nothing more)',
        params: tenantParams,
        body: closed({ pack: { type: 'string', enum: Object.keys(catalog.credits.packs) }, purchase_id: PURCHASE_ID }, ['pack', 'purchase_id'] as const),
        response: { 200: { type: 'object', properties: { tenant_id: { type: 'string' }, pack: { type: 'string' }, credits: { type: 'integer' }, price_usd: { type: 'string' }, available: { type: 'integer' }, replay: { type: 'boolean' } } }, ...e4, ...e5 },
      },
    },
    async (req) => {
      const tenant = tenantOf(req, req.params.tenant);
      // Recording a payment is the platform's act: a team's own key cannot credit itself.
      ctx.requirePlatformKey(req, 'recording a credit purchase needs a finance key bound to all tenants (the platform\'s)');
      const r = await service.purchasePack(tenant, req.body.pack, req.body.purchase_id, now());
      return { tenant_id: tenant, pack: r.pack.id, credits: r.pack.credits, price_usd: microsToUsd(r.pack.priceMicros), available: r.available, replay: r.replay };
    },
  );

  app.get<{ Params: { tenant: string }; Querystring: { from?: string; to?: string; limit?: number } }>(
    '/v1/billing/tenants/:tenant/credits/entries',
    {
      config: { roles: ['finance', 'auditor'] },
      schema: {
        tags: ['billing'],
        summary: 'The team\'s credit ledger entries (double-entry, append-only) in append order, and whether every transaction sums to zero',
        params: tenantParams,
        querystring: closed({ from: DATE, to: DATE, limit: { type: 'integer', minimum: 1, maximum: 10_000, default: 1000 } }),
        response: {
          200: {
            type: 'object',
            properties: {
              tenant_id: { type: 'string' }, balanced: { type: 'boolean' }, count: { type: 'integer' }, truncated: { type: 'boolean' },
              entries: { type: 'array', items: { type: 'object', properties: { tx_id: { type: 'string' }, seq: { type: 'integer' }, account: { type: 'string' }, unit: { type: 'string' }, amount: { type: 'integer' }, kind: { type: 'string' }, ref: { type: 'string' }, at: { type: 'string' }, memo: { type: 'string' } } } },
            },
          },
          ...e4,
          ...e5,
        },
      },
    },
    async (req) => {
      const tenant = tenantOf(req, req.params.tenant);
      const t = now();
      const from = req.query.from ? timeField(req.query.from, 'from', t) : -Infinity;
      const to = req.query.to ? timeField(req.query.to, 'to', t) : Infinity;
      const s = creditStatement(await ctx.entries(tenant), { from, to, limit: req.query.limit ?? 1000 });
      return {
        tenant_id: tenant, balanced: s.balanced, count: s.entries.length, truncated: s.truncated,
        entries: s.entries.map((e) => ({ tx_id: e.txId, seq: e.seq, account: e.account, unit: e.unit, amount: e.amount, kind: e.kind, ref: e.ref, at: new Date(e.at).toISOString(), memo: e.memo })),
      };
    },
  );
}
