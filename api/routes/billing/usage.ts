import type { FastifyInstance } from 'fastify';
import { fallbackChain, type RoutingPreference } from '../../../billing/index.ts';
import { microsToUsd } from '../../../rules/index.ts';
import { text } from '../../schemas.ts';
import { closed, e4, e5, iso, limitJson, limitView, modelView, tenantParams, USER, type BillingRouteContext } from './shared.ts';

const PREFERENCE = { type: 'string', enum: ['cheapest', 'best_quality'] } as const;

/** Usage and routing: executions this month against the plan, a user's spend today, which model a skill runs on. */
export function usageRoutes(app: FastifyInstance, ctx: BillingRouteContext): void {
  const { service, now, tenantOf } = ctx;

  app.get<{ Params: { tenant: string }; Querystring: { user_id?: string } }>(
    '/v1/billing/tenants/:tenant/usage',
    {
      config: { roles: ['runner', 'finance', 'auditor'] },
      schema: {
        tags: ['billing'],
        summary: 'Executions this month against the plan, the decision the next one would get (with retry-after or reset time), and a user\'s platform-key spend today against the daily cap',
        params: tenantParams,
        querystring: closed({ user_id: USER }),
        response: {
          200: {
            type: 'object',
            properties: {
              tenant_id: { type: 'string' }, plan_id: { type: 'string' }, month_start: { type: 'string' }, month_end: { type: 'string' }, executions: { type: 'integer' },
              last_execution_at: { type: ['string', 'null'] }, included: { type: ['integer', 'null'] }, throttle_after: { type: ['integer', 'null'] }, overage_opt_in: { type: 'boolean' },
              next: limitView,
              user: { type: 'object', properties: { user_id: { type: 'string' }, platform_spend_today_usd: { type: 'string' }, daily_spend_cap_usd: { type: ['string', 'null'] }, resets_at: { type: 'string' } } },
            },
          },
          ...e4,
          ...e5,
        },
      },
    },
    async (req) => {
      const tenant = tenantOf(req, req.params.tenant);
      const u = await service.usageSummary(tenant, now(), req.query.user_id);
      return {
        tenant_id: tenant, plan_id: u.planId, month_start: iso(u.monthStart), month_end: iso(u.monthEnd), executions: u.executions, last_execution_at: iso(u.lastExecutionAt),
        included: u.included, throttle_after: u.throttleAfter, overage_opt_in: u.overageOptIn, next: limitJson(u.next),
        ...(u.user
          ? { user: { user_id: u.user.userId, platform_spend_today_usd: microsToUsd(u.user.platformSpendTodayMicros), daily_spend_cap_usd: u.user.dailySpendCapMicros === null ? null : microsToUsd(u.user.dailySpendCapMicros), resets_at: iso(u.user.resetsAt) } }
          : {}),
      };
    },
  );

  app.get<{ Params: { tenant: string }; Querystring: { skill: string; preference?: RoutingPreference; user_id?: string; agent_id?: string } }>(
    '/v1/billing/tenants/:tenant/route',
    {
      config: { roles: ['runner', 'finance'] },
      schema: {
        tags: ['billing'],
        summary: 'Which model a skill runs on for this team (cheapest, or best quality, above the skill\'s threshold, within the plan), and with a user whose key it would use',
        params: tenantParams,
        querystring: closed({ skill: text(1, 64), preference: PREFERENCE, user_id: USER, agent_id: USER }, ['skill'] as const),
        response: {
          200: {
            type: 'object',
            properties: {
              skill: { type: 'string' }, ok: { type: 'boolean' }, reason: { type: 'string' }, message: { type: 'string' }, tier: { type: 'string' }, quality: { type: 'number' }, candidates: { type: 'integer' },
              model: modelView, key_source: { type: 'string', enum: ['byok', 'platform'] },
              // The ordered failover chain, each step priced (per 1M tokens), so a runner need not ask again.
              fallback: { type: 'array', items: { type: 'object', properties: { model: { type: 'string' }, provider: { type: 'string' }, class: { type: 'string' }, price_input_usd: { type: 'string' }, price_output_usd: { type: 'string' } } } },
            },
          },
          ...e4,
          ...e5,
        },
      },
    },
    async (req) => {
      const tenant = tenantOf(req, req.params.tenant);
      const q = req.query;
      const r = await service.route(tenant, q.skill, { ...(q.preference ? { preference: q.preference } : {}), ...(q.user_id !== undefined ? { userId: q.user_id } : {}), ...(q.agent_id ? { agentId: q.agent_id } : {}) }, now());
      if (!r.ok) return { skill: q.skill, ok: false, reason: r.reason, message: r.message };
      const t = now();
      const chain = ctx.usageBilling ? fallbackChain(ctx.catalog, ctx.usageBilling.pricing, q.skill, { plan: await service.plan(tenant, t), now: t, ...(q.preference ? { preference: q.preference } : {}) }) : [];
      return {
        skill: q.skill, ok: true, tier: r.tier, quality: r.quality, candidates: r.candidates, model: { id: r.model.id, provider: r.model.provider, tier: r.model.tier }, ...(r.keySource ? { key_source: r.keySource } : {}),
        fallback: chain.map((x) => ({ model: x.model, provider: x.provider, class: x.class, price_input_usd: microsToUsd(x.priceInputMicros), price_output_usd: microsToUsd(x.priceOutputMicros) })),
      };
    },
  );
}

export { PREFERENCE };
