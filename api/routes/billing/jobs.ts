import type { FastifyInstance } from 'fastify';
import { KEY_STATUSES, type KeyStatus, type ModelTier, type RoutingPreference } from '../../../billing/index.ts';
import { usdToMicrosField } from '../../../guard/index.ts';
import { RUN_ID, text, USD } from '../../schemas.ts';
import { alertJson, alertView, balanceJson, balanceView, closed, COUNT, e4, e5, EXEC, execParams, iso, modelView, nullable, TENANT, USER, modelIdSchema, type BillingRouteContext } from './shared.ts';
import { PREFERENCE } from './usage.ts';

interface StartBody {
  tenant_id: string; user_id: string; execution_id: string; run_id?: string; agent_id?: string; skill?: string; model?: string; preference?: RoutingPreference;
  max_tokens: number; sandbox_tries?: number; estimated_llm_cost_usd?: string | number; running_agents?: number; sandbox_tries_today?: number;
}

/** Jobs: start an execution (limits, routing, credit hold), settle it, cancel it. */
export function jobRoutes(app: FastifyInstance, ctx: BillingRouteContext): void {
  const { service, catalog, ledger, now, tenantOf } = ctx;
  const MODEL = modelIdSchema(catalog);

  app.post<{ Body: StartBody }>(
    '/v1/billing/jobs',
    {
      config: { roles: ['runner'] },
      schema: {
        tags: ['billing'],
        summary: 'Start an execution: halt, plan limits, tier guardrails, model and key routing, then a credit hold. Answers allow, throttle (retry_after_ms) or deny (reason, resets_at).',
        body: closed(
          {
            tenant_id: TENANT, user_id: USER, execution_id: EXEC, run_id: RUN_ID, agent_id: USER, skill: text(1, 64), model: MODEL, preference: PREFERENCE,
            max_tokens: { type: 'integer', minimum: 1, maximum: 100_000_000 }, sandbox_tries: COUNT, estimated_llm_cost_usd: USD, running_agents: COUNT, sandbox_tries_today: COUNT,
          },
          ['tenant_id', 'user_id', 'execution_id', 'max_tokens'] as const,
        ),
        response: {
          200: {
            type: 'object',
            properties: {
              decision: { type: 'string', enum: ['allow', 'throttle', 'deny'] }, execution_id: { type: 'string' }, plan_id: { type: 'string' }, model: modelView,
              // Which key the call uses; never the key itself.
              key: { type: 'object', properties: { source: { type: 'string', enum: ['byok', 'platform'] }, provider: { type: 'string' }, model: { type: 'string' }, agent_specific: { type: 'boolean' }, reason: { type: 'string' } } },
              hold: nullable({ type: 'object', properties: { unit: { type: 'string', enum: ['credit', 'run'] }, amount: { type: 'integer' } } }),
              execution_number: { type: 'integer' }, overage: { type: 'boolean' }, included: { type: ['integer', 'null'] },
              alerts: { type: 'array', items: alertView },
              reason: { type: 'string' }, message: { type: 'string' }, retry_after_ms: { type: 'integer' }, resets_at: { type: 'string' },
            },
          },
          ...e4,
          ...e5,
        },
      },
    },
    async (req, reply) => {
      const b = req.body;
      tenantOf(req, b.tenant_id, 'tenant_id');
      const out = await service.startJob({
        tenantId: b.tenant_id, userId: b.user_id, executionId: b.execution_id, maxTokens: b.max_tokens, now: now(),
        ...(b.run_id !== undefined ? { runId: b.run_id } : {}), ...(b.agent_id !== undefined ? { agentId: b.agent_id } : {}),
        ...(b.skill !== undefined ? { skill: b.skill } : {}), ...(b.model !== undefined ? { model: b.model } : {}), ...(b.preference ? { preference: b.preference } : {}),
        ...(b.sandbox_tries !== undefined ? { sandboxTries: b.sandbox_tries } : {}), ...(b.running_agents !== undefined ? { runningAgents: b.running_agents } : {}),
        ...(b.sandbox_tries_today !== undefined ? { sandboxTriesToday: b.sandbox_tries_today } : {}),
        ...(b.estimated_llm_cost_usd !== undefined ? { estimatedLlmMicros: usdToMicrosField(b.estimated_llm_cost_usd, 'estimated_llm_cost_usd') } : {}),
      });
      if (out.decision === 'throttle') {
        void reply.header('retry-after', String(Math.ceil(out.retryAfterMs / 1000)));
        return { decision: out.decision, reason: out.reason, message: out.message, retry_after_ms: out.retryAfterMs };
      }
      if (out.decision === 'deny') return { decision: out.decision, reason: out.reason, message: out.message, ...(out.resetsAt !== undefined ? { resets_at: iso(out.resetsAt) } : {}) };
      if (out.alerts.length > 0 || out.monthCharge) ctx.onJobAlerts?.({ tenantId: b.tenant_id, userId: b.user_id, burns: out.alerts, ...(out.monthCharge ? { monthCharge: out.monthCharge } : {}), at: now() });
      const k = out.key;
      return {
        decision: 'allow', execution_id: out.executionId, plan_id: out.planId, model: { id: out.model.id, provider: out.model.provider, tier: out.model.tier },
        key: k.source === 'byok' ? { source: 'byok', provider: k.provider, model: k.model, agent_specific: k.agentSpecific } : { source: 'platform', provider: k.provider, model: k.model, reason: k.reason },
        hold: out.hold, execution_number: out.limit.executionNumber, overage: out.limit.overage, included: out.limit.included, alerts: out.alerts.map(alertJson),
      };
    },
  );

  const tierCalls = closed({ fast: COUNT, standard: COUNT, heavy: COUNT });
  app.post<{ Params: { execution_id: string }; Body: { tenant_id: string; user_id: string; model_calls?: Partial<Record<ModelTier, number>>; sandbox_tries?: number; llm_cost_usd: string | number; key_status?: KeyStatus; key_detail?: string } }>(
    '/v1/billing/jobs/:execution_id/settle',
    {
      config: { roles: ['runner'] },
      schema: {
        tags: ['billing'],
        summary: 'Settle an execution: deduct its credits (1 fast, 5 standard, 25 heavy per model call; 2 per sandbox try) from the hold, refund the rest',
        params: execParams,
        body: closed(
          { tenant_id: TENANT, user_id: USER, model_calls: tierCalls, sandbox_tries: COUNT, llm_cost_usd: USD, key_status: { type: 'string', enum: [...KEY_STATUSES] }, key_detail: text(0, 500) },
          ['tenant_id', 'user_id', 'llm_cost_usd'] as const,
        ),
        response: {
          200: {
            type: 'object',
            properties: {
              execution_id: { type: 'string' }, charged: { type: 'integer' }, refunded: { type: 'integer' }, shortfall: { type: 'integer' }, alerts: { type: 'array', items: alertView }, balance: balanceView,
              key_alert: { type: 'object', properties: { provider: { type: 'string' }, agent_id: { type: 'string' }, status: { type: 'string' }, severity: { type: 'string' }, message: { type: 'string' }, dedup_key: { type: 'string' } } },
            },
          },
          ...e4,
          ...e5,
        },
      },
    },
    async (req) => {
      const b = req.body;
      const tenant = tenantOf(req, b.tenant_id, 'tenant_id');
      const t = now();
      const s = await service.settleOpenJob({
        tenantId: tenant, userId: b.user_id, executionId: req.params.execution_id, llmMicros: usdToMicrosField(b.llm_cost_usd, 'llm_cost_usd'), now: t,
        ...(b.model_calls ? { modelCalls: b.model_calls } : {}), ...(b.sandbox_tries !== undefined ? { sandboxTries: b.sandbox_tries } : {}),
        ...(b.key_status ? { keyStatus: b.key_status } : {}), ...(b.key_detail ? { keyDetail: b.key_detail } : {}),
      });
      const k = s.keyAlert;
      if (s.alerts.length > 0 || k) ctx.onJobAlerts?.({ tenantId: tenant, userId: b.user_id, burns: s.alerts, key: k ?? null, at: t });
      return {
        execution_id: req.params.execution_id, charged: s.charged, refunded: s.refunded, shortfall: s.shortfall, alerts: s.alerts.map(alertJson), balance: balanceJson(tenant, await ledger.balance(tenant, t)),
        ...(k ? { key_alert: { provider: k.provider, agent_id: k.agentId, status: k.status, severity: k.severity, message: k.message, dedup_key: k.dedupKey } } : {}),
      };
    },
  );

  app.post<{ Params: { execution_id: string }; Body: { tenant_id: string } }>(
    '/v1/billing/jobs/:execution_id/cancel',
    {
      config: { roles: ['runner'] },
      schema: {
        tags: ['billing'],
        summary: 'Cancel an execution that did not run: its whole hold is refunded and it no longer counts',
        params: execParams,
        body: closed({ tenant_id: TENANT }, ['tenant_id'] as const),
        response: { 200: { type: 'object', properties: { execution_id: { type: 'string' }, status: { type: 'string', enum: ['cancelled'] } } }, ...e4, ...e5 },
      },
    },
    async (req) => {
      const tenant = tenantOf(req, req.body.tenant_id, 'tenant_id');
      await service.cancelOpenJob(tenant, req.params.execution_id, now());
      return { execution_id: req.params.execution_id, status: 'cancelled' };
    },
  );
}
