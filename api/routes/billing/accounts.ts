import { randomUUID } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { PLAN_IDS, type PlanId } from '../../../billing/index.ts';
import { microsToUsd } from '../../../rules/index.ts';
import { errorBodySchema } from '../../errors.ts';
import { text } from '../../schemas.ts';
import { accountJson, accountView, closed, e4, e5, modelView, planJson, planSummary, tenantParams, type BillingRouteContext } from './shared.ts';

/** Plans and accounts: the catalog, a team's account, its plan set by hand, overage opt-in, the Stripe subscription. */
export function accountRoutes(app: FastifyInstance, ctx: BillingRouteContext): void {
  const { catalog, service, now, tenantOf } = ctx;

  app.get(
    '/v1/billing/plans',
    {
      config: { roles: ['runner', 'finance', 'oncall', 'auditor'] },
      schema: {
        tags: ['billing'],
        summary: 'The plans (tiers), credit packs and model catalog',
        response: {
          200: {
            type: 'object',
            properties: {
              plans: { type: 'array', items: planSummary },
              credit_packs: { type: 'array', items: { type: 'object', properties: { id: { type: 'string' }, price_usd: { type: 'string' }, credits: { type: 'integer' } } } },
              credits_per_model_tier: { type: 'object', additionalProperties: { type: 'integer' } },
              credits_per_sandbox_try: { type: 'integer' },
              models: { type: 'array', items: modelView },
            },
          },
          ...e4,
        },
      },
    },
    async () => ({
      plans: PLAN_IDS.map((id) => planJson(catalog, id)),
      credit_packs: Object.values(catalog.credits.packs).map((p) => ({ id: p.id, price_usd: microsToUsd(p.priceMicros), credits: p.credits })),
      credits_per_model_tier: catalog.credits.perModelTier,
      credits_per_sandbox_try: catalog.credits.perSandboxTry,
      models: catalog.models.map((m) => ({ id: m.id, provider: m.provider, tier: m.tier })),
    }),
  );

  app.get<{ Params: { tenant: string } }>(
    '/v1/billing/tenants/:tenant/account',
    { config: { roles: ['finance', 'auditor'] }, schema: { tags: ['billing'], summary: 'A team\'s billing account: plan (and the plan its limits follow), seats, BYOK, payment state', params: tenantParams, response: { 200: accountView, ...e4, ...e5 } } },
    async (req) => accountJson(catalog, await service.account(tenantOf(req, req.params.tenant), now())),
  );

  app.put<{ Params: { tenant: string }; Body: { plan_id: PlanId; seats?: number; byok?: boolean } }>(
    '/v1/billing/tenants/:tenant/account',
    {
      config: { roles: ['finance'] },
      schema: {
        tags: ['billing'],
        summary: 'Set a team\'s plan by hand (contracts, no Stripe subscription). A team subscribed through Stripe changes plan in Stripe (409).',
        params: tenantParams,
        body: closed({ plan_id: { type: 'string', enum: [...PLAN_IDS] }, seats: { type: 'integer', minimum: 1, maximum: 10_000 }, byok: { type: 'boolean' } }, ['plan_id'] as const),
        response: { 200: accountView, ...e4, 409: errorBodySchema, ...e5 },
      },
    },
    async (req) => {
      const tenant = tenantOf(req, req.params.tenant);
      // A plan set by hand is a contract of the platform's, not something a team grants itself.
      ctx.requirePlatformKey(req, 'setting a plan by hand needs a finance key bound to all tenants (the platform\'s)');
      const b = req.body;
      const a = await service.setPlanByHand(tenant, { planId: b.plan_id, ...(b.seats !== undefined ? { seats: b.seats } : {}), ...(b.byok !== undefined ? { byok: b.byok } : {}) }, now(), Boolean(ctx.stripe));
      return accountJson(catalog, a);
    },
  );

  app.put<{ Params: { tenant: string }; Body: { overage_opt_in: boolean } }>(
    '/v1/billing/tenants/:tenant/overage',
    {
      config: { roles: ['finance'] },
      schema: { tags: ['billing'], summary: 'Opt in to (or out of) paid overage instead of throttling / the monthly cap', params: tenantParams, body: closed({ overage_opt_in: { type: 'boolean' } }, ['overage_opt_in'] as const), response: { 200: accountView, ...e4, ...e5 } },
    },
    async (req) => accountJson(catalog, await service.setOverage(tenantOf(req, req.params.tenant), req.body.overage_opt_in, now())),
  );

  app.post<{ Params: { tenant: string }; Body: { plan_id: 'pro' | 'team'; byok?: boolean; seats?: number; email: string; name?: string; request_id?: string } }>(
    '/v1/billing/tenants/:tenant/subscription',
    {
      config: { roles: ['finance'] },
      schema: {
        tags: ['billing'],
        summary: 'Subscribe a team through Stripe (customer created once; standard or BYOK price, per seat for Team). request_id makes a retry idempotent.',
        params: tenantParams,
        body: closed(
          { plan_id: { type: 'string', enum: ['pro', 'team'] }, byok: { type: 'boolean' }, seats: { type: 'integer', minimum: 1, maximum: 10_000 }, email: { type: 'string', format: 'email', maxLength: 254 }, name: text(1, 200), request_id: { type: 'string', pattern: '^[A-Za-z0-9._:-]{1,100}$' } },
          ['plan_id', 'email'] as const,
        ),
        response: { 200: accountView, ...e4, ...e5 },
      },
    },
    async (req) => {
      const tenant = tenantOf(req, req.params.tenant);
      const stripe = ctx.needStripe();
      const t = now();
      await stripe.ensureCustomer({ tenantId: tenant, email: req.body.email, ...(req.body.name ? { name: req.body.name } : {}), now: t });
      const a = await stripe.subscribe({ tenantId: tenant, planId: req.body.plan_id, byok: req.body.byok ?? false, ...(req.body.seats !== undefined ? { seats: req.body.seats } : {}), requestId: req.body.request_id ?? randomUUID(), now: t });
      return accountJson(catalog, a);
    },
  );
}
