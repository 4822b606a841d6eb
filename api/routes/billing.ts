import { randomUUID } from 'node:crypto';
import type {} from '@fastify/swagger';
import type { FastifyError, FastifyInstance, FastifyRequest } from 'fastify';
import {
  assertBalanced,
  BillingError,
  effectivePlanId,
  financeReport,
  monthStartUtc,
  nextMonthStartUtc,
  routeModel,
  subscriptionPriceMicros,
  type AccountStore,
  type BillingAccount,
  type BillingCatalog,
  type BillingService,
  type BurnAlert,
  type ByokMode,
  type CreditLedgerApi,
  type KeyVault,
  type LedgerEntry,
  type LimitDecision,
  type MasterKeys,
  type ModelTier,
  type PlanId,
  type RoutingPreference,
  type StripeBilling,
  type UsageSource,
  type VaultKeyView,
} from '../../billing/index.ts';
import { microsToUsd } from '../../rules/index.ts';
import { requireTenant } from '../auth.ts';
import { ApiError, errorBodySchema } from '../errors.ts';
import { usdToMicrosField } from '../../guard/index.ts';
import { principalOf } from '../http.ts';
import { DATE_TIME, EMPTY_BODY, text, USD } from '../schemas.ts';
import { timeField } from '../time.ts';
import { toCsv } from './reports.ts';

/** What the billing routes need; `billingFromConfig()` (billing/) returns a superset of it. */
export interface BillingRoutesOptions {
  service: BillingService;
  catalog: BillingCatalog;
  accounts: AccountStore;
  ledger: CreditLedgerApi;
  /** The credit ledger's entries of one owner, in append order. */
  entries: (owner: string) => Promise<LedgerEntry[]>;
  usage: UsageSource;
  /** null/absent: BYOK routes answer 503 FORGE_ERR_BYOK_NOT_CONFIGURED. */
  vault?: KeyVault | null;
  /** The configured master keys; a rotation re-seals every key under the active one. */
  vaultKeys?: MasterKeys | null;
  /** null/absent: Stripe routes (subscription, webhook) answer 503 FORGE_ERR_STRIPE_NOT_CONFIGURED. */
  stripe?: StripeBilling | null;
  now?: () => number;
  /** Failures behind a 502/503 answer (Stripe, provider, storage) are reported here too. */
  onError?: (e: unknown, where: string) => void;
}

const TENANT = { type: 'string', pattern: '^[A-Za-z0-9._-]{1,64}$' } as const;
const USER = { type: 'string', pattern: '^[A-Za-z0-9._:@-]{1,128}$' } as const;
const EXEC = { type: 'string', pattern: '^[A-Za-z0-9._:@-]{1,128}$' } as const;
const COUNT = { type: 'integer', minimum: 0, maximum: 1_000_000 } as const;
const DATE = DATE_TIME;
const nullable = <T extends Record<string, unknown>>(s: T) => ({ anyOf: [s, { type: 'null' }] }) as const;

const e4 = { 400: errorBodySchema, 401: errorBodySchema, 403: errorBodySchema, 404: errorBodySchema };
const e5 = { 502: errorBodySchema, 503: errorBodySchema };
const tenantParams = { type: 'object', additionalProperties: false, required: ['tenant'], properties: { tenant: TENANT } } as const;
const userParams = { type: 'object', additionalProperties: false, required: ['tenant', 'user'], properties: { tenant: TENANT, user: USER } } as const;
const providerParams = { type: 'object', additionalProperties: false, required: ['tenant', 'user', 'provider'], properties: { tenant: TENANT, user: USER, provider: { type: 'string', pattern: '^[a-z][a-z0-9_-]{0,31}$' } } } as const;
const execParams = { type: 'object', additionalProperties: false, required: ['execution_id'], properties: { execution_id: EXEC } } as const;

const iso = (t: number | null): string | null => (t === null ? null : new Date(t).toISOString());
const snake = (f: string): string => f.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/** Billing's error codes onto the API registry, in this one place. 5xx say nothing of internals. */
export function apiErrorOfBilling(e: BillingError): ApiError | BillingError {
  const field = e.field ? snake(e.field) : undefined;
  switch (e.code) {
    case 'FORGE_ERR_BILLING_INPUT':
    case 'FORGE_ERR_BILLING_UNKNOWN_PLAN':
    case 'FORGE_ERR_STRIPE_WEBHOOK_PAYLOAD':
      return new ApiError('FORGE_ERR_VALIDATION', e.message, field);
    case 'FORGE_ERR_VAULT_KEY_REJECTED':
      return new ApiError('FORGE_ERR_BYOK_KEY_REJECTED', 'the provider rejected the key; it was not stored', 'api_key');
    case 'FORGE_ERR_VAULT_PROVIDER_UNREACHABLE':
      return new ApiError('FORGE_ERR_BYOK_PROVIDER_UNREACHABLE', 'the provider could not be reached to validate the key; it was not stored');
    case 'FORGE_ERR_STRIPE_WEBHOOK_SIGNATURE':
      return new ApiError('FORGE_ERR_STRIPE_SIGNATURE', 'the Stripe-Signature header does not verify for this payload', 'stripe-signature');
    case 'FORGE_ERR_STRIPE_API':
      return new ApiError('FORGE_ERR_STRIPE_UNAVAILABLE', 'Stripe did not accept the call; try again shortly');
    case 'FORGE_ERR_STORE_UNAVAILABLE':
      return new ApiError('FORGE_ERR_UNAVAILABLE', 'billing storage is unreachable; try again shortly');
    default:
      return e; // a 500; the app's handler hides it and reports it
  }
}

// ------------------------------------------------------------------ views (response schemas drop anything else)

const planSummary = {
  type: 'object',
  properties: {
    id: { type: 'string' }, name: { type: 'string' }, price_usd: { type: ['string', 'null'] }, byok_price_usd: { type: ['string', 'null'] }, per_seat: { type: 'boolean' },
    executions_per_month: { type: ['integer', 'null'] }, throttle_after: { type: ['integer', 'null'] }, overage_available: { type: 'boolean' },
    max_running_agents: { type: ['integer', 'null'] }, sandbox_tries_per_day: { type: ['integer', 'null'] }, daily_spend_cap_usd: { type: ['string', 'null'] },
    max_tokens_per_execution: { type: 'integer' }, blocked_model_tiers: { type: 'array', items: { type: 'string' } }, channels: { type: 'array', items: { type: 'string' } },
    log_retention_hours: { type: 'integer' }, free_monthly_runs: { type: 'integer' },
  },
} as const;

const accountView = {
  type: 'object',
  properties: {
    tenant_id: { type: 'string' }, plan_id: { type: 'string' }, effective_plan_id: { type: 'string' }, byok: { type: 'boolean' }, seats: { type: 'integer' },
    status: { type: 'string' }, overage_opt_in: { type: 'boolean' }, customer_id: { type: ['string', 'null'] }, subscription_id: { type: ['string', 'null'] },
    monthly_price_usd: { type: ['string', 'null'] }, updated_at: { type: 'string' }, plan: planSummary,
  },
} as const;

const alertView = {
  type: 'object',
  properties: {
    metric: { type: 'string' }, percent: { type: 'integer' }, value: { type: 'number' }, limit: { type: 'number' }, unit: { type: 'string' },
    user_id: { type: 'string' }, window_start: { type: 'string' }, dedup_key: { type: 'string' },
  },
} as const;

const balanceView = {
  type: 'object',
  properties: { tenant_id: { type: 'string' }, available: { type: 'integer' }, held: { type: 'integer' }, open_holds: { type: 'integer' }, free_runs_left: { type: 'integer' } },
} as const;

const keyView = {
  type: 'object',
  properties: { provider: { type: 'string' }, agent_id: { type: 'string' }, master_key_id: { type: 'string' }, created_at: { type: 'string' }, updated_at: { type: 'string' } },
} as const;

const limitView = {
  type: 'object',
  properties: {
    decision: { type: 'string', enum: ['allow', 'throttle', 'deny'] }, reason: { type: 'string' }, message: { type: 'string' }, execution_number: { type: 'integer' },
    overage: { type: 'boolean' }, included: { type: ['integer', 'null'] }, retry_after_ms: { type: 'integer' }, resets_at: { type: 'string' }, limit: { type: 'integer' },
  },
} as const;

function planJson(cat: BillingCatalog, id: PlanId) {
  const p = cat.plans[id];
  const usd = (m: number | null) => (m === null ? null : microsToUsd(m));
  return {
    id: p.id, name: p.name, price_usd: usd(p.priceMicros), byok_price_usd: usd(p.byokPriceMicros), per_seat: p.perSeat, executions_per_month: p.executionsPerMonth,
    throttle_after: p.throttleAfter, overage_available: p.overageAvailable, max_running_agents: p.maxRunningAgents, sandbox_tries_per_day: p.sandboxTriesPerDay,
    daily_spend_cap_usd: usd(p.dailySpendCapMicros), max_tokens_per_execution: p.maxTokensPerExecution, blocked_model_tiers: p.blockedModelTiers, channels: p.channels,
    log_retention_hours: p.logRetentionHours, free_monthly_runs: p.freeMonthlyRuns,
  };
}

function accountJson(cat: BillingCatalog, a: BillingAccount) {
  const eff = effectivePlanId(a);
  const price = subscriptionPriceMicros(cat.plans[a.planId], { byok: a.byok, seats: a.seats });
  return {
    tenant_id: a.tenantId, plan_id: a.planId, effective_plan_id: eff, byok: a.byok, seats: a.seats, status: a.status, overage_opt_in: a.overageOptIn,
    customer_id: a.customerId, subscription_id: a.subscriptionId, monthly_price_usd: price === null ? null : microsToUsd(price), updated_at: new Date(a.updatedAt).toISOString(),
    plan: planJson(cat, eff),
  };
}

const alertJson = (a: BurnAlert) => ({
  metric: a.metric, percent: a.percent, value: a.value, limit: a.limit, unit: a.unit, ...(a.userId !== undefined ? { user_id: a.userId } : {}),
  window_start: new Date(a.windowStart).toISOString(), dedup_key: a.dedupKey,
});

function limitJson(d: LimitDecision) {
  if (d.decision === 'allow') return { decision: d.decision, execution_number: d.executionNumber, overage: d.overage, included: d.included };
  if (d.decision === 'throttle') return { decision: d.decision, reason: d.reason, retry_after_ms: d.retryAfterMs, execution_number: d.executionNumber };
  return { decision: d.decision, reason: d.reason, message: d.message, resets_at: new Date(d.resetsAt).toISOString(), limit: d.limit };
}

const keyJson = (k: VaultKeyView) => ({ provider: k.provider, agent_id: k.agentId, master_key_id: k.masterKeyId, created_at: new Date(k.createdAt).toISOString(), updated_at: new Date(k.updatedAt).toISOString() });

const MARGIN_COLUMNS = ['plan_id', 'tenants', 'seats', 'custom_priced', 'revenue_usd', 'llm_cost_usd', 'margin_usd', 'margin_ratio'];

/**
 * Billing over HTTP: accounts and plans, usage and limits, job start (hold) and settle, credits, BYOK keys,
 * model routing, the Stripe webhook and the finance margin report. Every route checks role and tenant;
 * response schemas keep secrets (BYOK keys) out of every answer.
 */
export async function billingRoutes(app: FastifyInstance, opts: BillingRoutesOptions): Promise<void> {
  const { service, catalog, accounts, ledger } = opts;
  // Model ids are the catalog's: an id it does not list is refused, not routed or stored.
  const MODEL = catalog.models.length > 0 ? ({ type: 'string', enum: catalog.models.map((m) => m.id) } as const) : ({ type: 'string', not: {} } as const);
  const now = opts.now ?? Date.now;

  // One mapping of billing's errors for every route here; what it throws goes on to the app's handler.
  app.setErrorHandler((err: FastifyError | Error, req) => {
    if (!(err instanceof BillingError)) throw err;
    const mapped = apiErrorOfBilling(err);
    if (mapped instanceof ApiError && mapped.statusCode >= 500) opts.onError?.(err, `${req.method} ${req.routeOptions.url ?? req.url}`);
    throw mapped;
  });

  const tenantOf = (req: FastifyRequest, tenant: string, field = 'tenant'): string => {
    requireTenant(principalOf(req), tenant, field);
    return tenant;
  };
  const needVault = (): KeyVault => {
    if (!opts.vault) throw new ApiError('FORGE_ERR_BYOK_NOT_CONFIGURED', 'BYOK is off on this server: set FORGE_VAULT_MASTER_KEY (32 bytes, base64) to enable it');
    return opts.vault;
  };
  const needStripe = (): StripeBilling => {
    if (!opts.stripe) throw new ApiError('FORGE_ERR_STRIPE_NOT_CONFIGURED', 'Stripe is off on this server: set STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET to enable it');
    return opts.stripe;
  };

  // ---------------------------------------------------------------- plans and accounts

  app.get(
    '/v1/billing/plans',
    { config: { roles: ['runner', 'finance', 'oncall', 'auditor'] }, schema: { tags: ['billing'], summary: 'The plans (tiers), credit packs and model catalog', response: { 200: { type: 'object', properties: { plans: { type: 'array', items: planSummary }, credit_packs: { type: 'array', items: { type: 'object', properties: { id: { type: 'string' }, price_usd: { type: 'string' }, credits: { type: 'integer' } } } }, credits_per_model_tier: { type: 'object', additionalProperties: { type: 'integer' } }, credits_per_sandbox_try: { type: 'integer' }, models: { type: 'array', items: { type: 'object', properties: { id: { type: 'string' }, provider: { type: 'string' }, tier: { type: 'string' } } } } } }, ...e4 } } },
    async () => ({
      plans: (['free', 'pro', 'team', 'enterprise'] as const).map((id) => planJson(catalog, id)),
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
        body: { type: 'object', additionalProperties: false, required: ['plan_id'], properties: { plan_id: { type: 'string', enum: ['free', 'pro', 'team', 'enterprise'] }, seats: { type: 'integer', minimum: 1, maximum: 10_000 }, byok: { type: 'boolean' } } },
        response: { 200: accountView, ...e4, 409: errorBodySchema, ...e5 },
      },
    },
    async (req) => {
      const tenant = tenantOf(req, req.params.tenant);
      // A plan set by hand is a contract of the platform's, not something a team grants itself.
      if (principalOf(req).tenantId !== null) throw new ApiError('FORGE_ERR_FORBIDDEN_TENANT', 'setting a plan by hand needs a finance key bound to all tenants (the platform\'s)');
      const t = now();
      const a = await service.account(tenant, t);
      if (a.subscriptionId && opts.stripe) throw new ApiError('FORGE_ERR_CONFLICT', `the team is subscribed through Stripe (${a.subscriptionId}); change the plan there or with POST /v1/billing/tenants/${tenant}/subscription`, 'plan_id');
      const plan = catalog.plans[req.body.plan_id];
      const byok = req.body.byok ?? false;
      if (byok && plan.byokPriceMicros === null && plan.priceMicros !== null) throw new ApiError('FORGE_ERR_VALIDATION', `${plan.name} has no BYOK price`, 'byok');
      if (req.body.seats !== undefined && req.body.seats > 1 && !plan.perSeat) throw new ApiError('FORGE_ERR_VALIDATION', `${plan.name} is not priced per seat; leave seats out`, 'seats');
      const next: BillingAccount = { ...a, planId: plan.id, byok, seats: plan.perSeat ? (req.body.seats ?? a.seats) : 1, status: plan.id === 'free' ? 'none' : 'active', updatedAt: t };
      await accounts.put(next);
      return accountJson(catalog, next);
    },
  );

  app.put<{ Params: { tenant: string }; Body: { overage_opt_in: boolean } }>(
    '/v1/billing/tenants/:tenant/overage',
    {
      config: { roles: ['finance'] },
      schema: { tags: ['billing'], summary: 'Opt in to (or out of) paid overage instead of throttling / the monthly cap', params: tenantParams, body: { type: 'object', additionalProperties: false, required: ['overage_opt_in'], properties: { overage_opt_in: { type: 'boolean' } } }, response: { 200: accountView, ...e4, ...e5 } },
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
        body: {
          type: 'object', additionalProperties: false, required: ['plan_id', 'email'],
          properties: { plan_id: { type: 'string', enum: ['pro', 'team'] }, byok: { type: 'boolean' }, seats: { type: 'integer', minimum: 1, maximum: 10_000 }, email: { type: 'string', format: 'email', maxLength: 254 }, name: text(1, 200), request_id: { type: 'string', pattern: '^[A-Za-z0-9._:-]{1,100}$' } },
        },
        response: { 200: accountView, ...e4, ...e5 },
      },
    },
    async (req) => {
      const tenant = tenantOf(req, req.params.tenant);
      const stripe = needStripe();
      const t = now();
      await stripe.ensureCustomer({ tenantId: tenant, email: req.body.email, ...(req.body.name ? { name: req.body.name } : {}), now: t });
      const a = await stripe.subscribe({ tenantId: tenant, planId: req.body.plan_id, byok: req.body.byok ?? false, ...(req.body.seats !== undefined ? { seats: req.body.seats } : {}), requestId: req.body.request_id ?? randomUUID(), now: t });
      return accountJson(catalog, a);
    },
  );

  // ---------------------------------------------------------------- usage, limits, routing

  app.get<{ Params: { tenant: string }; Querystring: { user_id?: string } }>(
    '/v1/billing/tenants/:tenant/usage',
    {
      config: { roles: ['runner', 'finance', 'auditor'] },
      schema: {
        tags: ['billing'],
        summary: 'Executions this month against the plan, the decision the next one would get (with retry-after or reset time), and a user\'s platform-key spend today against the daily cap',
        params: tenantParams,
        querystring: { type: 'object', additionalProperties: false, properties: { user_id: USER } },
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
        querystring: { type: 'object', additionalProperties: false, required: ['skill'], properties: { skill: text(1, 64), preference: { type: 'string', enum: ['cheapest', 'best_quality'] }, user_id: USER, agent_id: USER } },
        response: {
          200: {
            type: 'object',
            properties: {
              skill: { type: 'string' }, ok: { type: 'boolean' }, reason: { type: 'string' }, message: { type: 'string' }, tier: { type: 'string' }, quality: { type: 'number' }, candidates: { type: 'integer' },
              model: { type: 'object', properties: { id: { type: 'string' }, provider: { type: 'string' }, tier: { type: 'string' } } },
              key_source: { type: 'string', enum: ['byok', 'platform'] },
            },
          },
          ...e4,
          ...e5,
        },
      },
    },
    async (req) => {
      const tenant = tenantOf(req, req.params.tenant);
      const plan = await service.plan(tenant, now());
      const r = routeModel(catalog, req.query.skill, { plan, ...(req.query.preference ? { preference: req.query.preference } : {}) });
      if (!r.ok) return { skill: req.query.skill, ok: false, reason: r.reason, message: r.message };
      let keySource: 'byok' | 'platform' | undefined;
      if (req.query.user_id !== undefined) {
        keySource = opts.vault
          ? (await opts.vault.routeKey({ tenantId: tenant, userId: req.query.user_id, ...(req.query.agent_id ? { agentId: req.query.agent_id } : {}), model: r.model.id, provider: r.model.provider })).source
          : 'platform';
      }
      return { skill: req.query.skill, ok: true, tier: r.tier, quality: r.quality, candidates: r.candidates, model: { id: r.model.id, provider: r.model.provider, tier: r.model.tier }, ...(keySource ? { key_source: keySource } : {}) };
    },
  );

  // ---------------------------------------------------------------- jobs: start (hold) and settle

  interface StartBody {
    tenant_id: string; user_id: string; execution_id: string; run_id?: string; agent_id?: string; skill?: string; model?: string; preference?: RoutingPreference;
    max_tokens: number; sandbox_tries?: number; estimated_llm_cost_usd?: string | number; running_agents?: number; sandbox_tries_today?: number;
  }
  app.post<{ Body: StartBody }>(
    '/v1/billing/jobs',
    {
      config: { roles: ['runner'] },
      schema: {
        tags: ['billing'],
        summary: 'Start an execution: halt, plan limits, tier guardrails, model and key routing, then a credit hold. Answers allow, throttle (retry_after_ms) or deny (reason, resets_at).',
        body: {
          type: 'object', additionalProperties: false, required: ['tenant_id', 'user_id', 'execution_id', 'max_tokens'],
          properties: {
            tenant_id: TENANT, user_id: USER, execution_id: EXEC, run_id: { type: 'string', pattern: '^[A-Za-z0-9._:-]{1,128}$' }, agent_id: USER,
            skill: text(1, 64), model: MODEL, preference: { type: 'string', enum: ['cheapest', 'best_quality'] },
            max_tokens: { type: 'integer', minimum: 1, maximum: 100_000_000 }, sandbox_tries: COUNT, estimated_llm_cost_usd: USD, running_agents: COUNT, sandbox_tries_today: COUNT,
          },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              decision: { type: 'string', enum: ['allow', 'throttle', 'deny'] }, execution_id: { type: 'string' }, plan_id: { type: 'string' },
              model: { type: 'object', properties: { id: { type: 'string' }, provider: { type: 'string' }, tier: { type: 'string' } } },
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
      if ((b.skill === undefined) === (b.model === undefined)) throw new ApiError('FORGE_ERR_VALIDATION', 'give exactly one of skill (the router picks the model) or model', 'skill');
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
      const k = out.key;
      return {
        decision: 'allow', execution_id: out.executionId, plan_id: out.planId, model: { id: out.model.id, provider: out.model.provider, tier: out.model.tier },
        key: k.source === 'byok' ? { source: 'byok', provider: k.provider, model: k.model, agent_specific: k.agentSpecific } : { source: 'platform', provider: k.provider, model: k.model, reason: k.reason },
        hold: out.hold, execution_number: out.limit.executionNumber, overage: out.limit.overage, included: out.limit.included, alerts: out.alerts.map(alertJson),
      };
    },
  );

  const tierCalls = { type: 'object', additionalProperties: false, properties: { fast: COUNT, standard: COUNT, heavy: COUNT } } as const;
  app.post<{ Params: { execution_id: string }; Body: { tenant_id: string; user_id: string; model_calls?: Partial<Record<ModelTier, number>>; sandbox_tries?: number; llm_cost_usd: string | number } }>(
    '/v1/billing/jobs/:execution_id/settle',
    {
      config: { roles: ['runner'] },
      schema: {
        tags: ['billing'],
        summary: 'Settle an execution: deduct its credits (1 fast, 5 standard, 25 heavy per model call; 2 per sandbox try) from the hold, refund the rest',
        params: execParams,
        body: { type: 'object', additionalProperties: false, required: ['tenant_id', 'user_id', 'llm_cost_usd'], properties: { tenant_id: TENANT, user_id: USER, model_calls: tierCalls, sandbox_tries: COUNT, llm_cost_usd: USD } },
        response: {
          200: {
            type: 'object',
            properties: { execution_id: { type: 'string' }, charged: { type: 'integer' }, refunded: { type: 'integer' }, shortfall: { type: 'integer' }, alerts: { type: 'array', items: alertView }, balance: balanceView },
          },
          ...e4,
          ...e5,
        },
      },
    },
    async (req) => {
      const b = req.body;
      const tenant = tenantOf(req, b.tenant_id, 'tenant_id');
      if (!(await service.isOpen(tenant, req.params.execution_id))) throw new ApiError('FORGE_ERR_NOT_FOUND', 'no open execution with this id for this tenant', 'execution_id');
      const t = now();
      const s = await service.settleJob({
        tenantId: tenant, userId: b.user_id, executionId: req.params.execution_id, llmMicros: usdToMicrosField(b.llm_cost_usd, 'llm_cost_usd'), now: t,
        ...(b.model_calls ? { modelCalls: b.model_calls } : {}), ...(b.sandbox_tries !== undefined ? { sandboxTries: b.sandbox_tries } : {}),
      });
      const bal = await ledger.balance(tenant, t);
      return {
        execution_id: req.params.execution_id, charged: s.charged, refunded: s.refunded, shortfall: s.shortfall, alerts: s.alerts.map(alertJson),
        balance: { tenant_id: tenant, available: bal.available, held: bal.held, open_holds: bal.openHolds, free_runs_left: bal.freeRunsLeft },
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
        body: { type: 'object', additionalProperties: false, required: ['tenant_id'], properties: { tenant_id: TENANT } },
        response: { 200: { type: 'object', properties: { execution_id: { type: 'string' }, status: { type: 'string', enum: ['cancelled'] } } }, ...e4, ...e5 },
      },
    },
    async (req) => {
      const tenant = tenantOf(req, req.body.tenant_id, 'tenant_id');
      if (!(await service.cancelJob(tenant, req.params.execution_id, now()))) throw new ApiError('FORGE_ERR_NOT_FOUND', 'no open execution with this id for this tenant', 'execution_id');
      return { execution_id: req.params.execution_id, status: 'cancelled' };
    },
  );

  // ---------------------------------------------------------------- credits

  app.get<{ Params: { tenant: string } }>(
    '/v1/billing/tenants/:tenant/credits',
    { config: { roles: ['runner', 'finance', 'auditor'] }, schema: { tags: ['billing'], summary: 'Credit balance: available, held by open executions, free runs left this month', params: tenantParams, response: { 200: balanceView, ...e4, ...e5 } } },
    async (req) => {
      const tenant = tenantOf(req, req.params.tenant);
      const b = await ledger.balance(tenant, now());
      return { tenant_id: tenant, available: b.available, held: b.held, open_holds: b.openHolds, free_runs_left: b.freeRunsLeft };
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
        body: { type: 'object', additionalProperties: false, required: ['pack', 'purchase_id'], properties: { pack: { type: 'string', enum: Object.keys(catalog.credits.packs) }, purchase_id: { type: 'string', pattern: '^[A-Za-z0-9._:@/-]{1,128}$' } } },
        response: { 200: { type: 'object', properties: { tenant_id: { type: 'string' }, pack: { type: 'string' }, credits: { type: 'integer' }, price_usd: { type: 'string' }, available: { type: 'integer' }, replay: { type: 'boolean' } } }, ...e4, ...e5 },
      },
    },
    async (req) => {
      const tenant = tenantOf(req, req.params.tenant);
      // Recording a payment is the platform's act: a team's own key cannot credit itself.
      if (principalOf(req).tenantId !== null) throw new ApiError('FORGE_ERR_FORBIDDEN_TENANT', 'recording a credit purchase needs a finance key bound to all tenants (the platform\'s)');
      const pack = catalog.credits.packs[req.body.pack];
      if (!pack) throw new ApiError('FORGE_ERR_VALIDATION', 'unknown credit pack', 'pack');
      const r = await ledger.purchase(tenant, req.body.purchase_id, pack.credits, now(), `pack ${pack.id} ${microsToUsd(pack.priceMicros)} USD`);
      return { tenant_id: tenant, pack: pack.id, credits: pack.credits, price_usd: microsToUsd(pack.priceMicros), available: r.available, replay: r.replay };
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
        querystring: { type: 'object', additionalProperties: false, properties: { from: DATE, to: DATE, limit: { type: 'integer', minimum: 1, maximum: 10_000, default: 1000 } } },
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
      if (from >= to) throw new ApiError('FORGE_ERR_VALIDATION', 'from must be before to', 'from');
      const all = await opts.entries(tenant);
      let balanced = true;
      try {
        assertBalanced(all);
      } catch {
        balanced = false;
      }
      const inRange = all.filter((e) => e.at >= from && e.at < to);
      const limit = req.query.limit ?? 1000;
      return {
        tenant_id: tenant, balanced, count: Math.min(limit, inRange.length), truncated: inRange.length > limit,
        entries: inRange.slice(0, limit).map((e) => ({ tx_id: e.txId, seq: e.seq, account: e.account, unit: e.unit, amount: e.amount, kind: e.kind, ref: e.ref, at: new Date(e.at).toISOString(), memo: e.memo })),
      };
    },
  );

  // ---------------------------------------------------------------- BYOK key vault

  app.get<{ Params: { tenant: string; user: string } }>(
    '/v1/billing/tenants/:tenant/users/:user/keys',
    { config: { roles: ['auditor'] }, schema: { tags: ['byok'], summary: 'A user\'s BYOK keys: provider, agent, master key id, dates (never the key nor any part of it)', params: userParams, response: { 200: { type: 'object', properties: { tenant_id: { type: 'string' }, user_id: { type: 'string' }, keys: { type: 'array', items: keyView } } }, ...e4, ...e5 } } },
    async (req) => {
      const tenant = tenantOf(req, req.params.tenant);
      return { tenant_id: tenant, user_id: req.params.user, keys: (await needVault().listKeys(tenant, req.params.user)).map(keyJson) };
    },
  );

  app.put<{ Params: { tenant: string; user: string; provider: string }; Body: { api_key: string; agent_id?: string } }>(
    '/v1/billing/tenants/:tenant/users/:user/keys/:provider',
    {
      config: { roles: ['admin'] },
      schema: {
        tags: ['byok'],
        summary: 'Save (or replace) a user\'s provider key, for all agents or one: tested with the provider first, sealed with AES-256-GCM, never returned',
        params: providerParams,
        body: { type: 'object', additionalProperties: false, required: ['api_key'], properties: { api_key: { type: 'string', minLength: 8, maxLength: 512, pattern: '^[\\u0021-\\u007E]+$' }, agent_id: USER } },
        response: { 200: keyView, ...e4, 422: errorBodySchema, ...e5 },
      },
    },
    async (req) => {
      const tenant = tenantOf(req, req.params.tenant);
      const v = await needVault().saveKey({ tenantId: tenant, userId: req.params.user, provider: req.params.provider, apiKey: req.body.api_key, now: now(), ...(req.body.agent_id ? { agentId: req.body.agent_id } : {}) });
      return keyJson(v);
    },
  );

  app.delete<{ Params: { tenant: string; user: string; provider: string }; Querystring: { agent_id?: string } }>(
    '/v1/billing/tenants/:tenant/users/:user/keys/:provider',
    {
      config: { roles: ['admin'] },
      schema: {
        tags: ['byok'],
        summary: 'Delete a user\'s key for a provider (the default, or one agent\'s with agent_id)',
        params: providerParams,
        querystring: { type: 'object', additionalProperties: false, properties: { agent_id: USER } },
        body: EMPTY_BODY,
        response: { 200: { type: 'object', properties: { deleted: { type: 'boolean' } } }, ...e4, ...e5 },
      },
    },
    async (req) => {
      const tenant = tenantOf(req, req.params.tenant);
      const ok = await needVault().deleteKey(tenant, req.params.user, req.params.provider, req.query.agent_id ?? '*');
      if (!ok) throw new ApiError('FORGE_ERR_NOT_FOUND', 'no such key', 'provider');
      return { deleted: true };
    },
  );

  app.put<{ Params: { tenant: string; user: string }; Body: { mode: ByokMode['mode']; models?: string[] } }>(
    '/v1/billing/tenants/:tenant/users/:user/byok-mode',
    {
      config: { roles: ['admin'] },
      schema: {
        tags: ['byok'],
        summary: 'Hybrid mode: the user\'s keys for all models (all), for the listed models only (models), or never (off)',
        params: userParams,
        body: { type: 'object', additionalProperties: false, required: ['mode'], properties: { mode: { type: 'string', enum: ['all', 'models', 'off'] }, models: { type: 'array', maxItems: 200, uniqueItems: true, items: MODEL } } },
        response: { 200: { type: 'object', properties: { mode: { type: 'string' }, models: { type: 'array', items: { type: 'string' } } } }, ...e4, ...e5 },
      },
    },
    async (req) => {
      const tenant = tenantOf(req, req.params.tenant);
      const { mode, models } = req.body;
      if (mode === 'models' && (!models || models.length === 0)) throw new ApiError('FORGE_ERR_VALIDATION', 'mode "models" needs the list of models', 'models');
      if (mode !== 'models' && models !== undefined) throw new ApiError('FORGE_ERR_VALIDATION', 'models go only with mode "models"', 'models');
      const m: ByokMode = mode === 'models' ? { mode, models: models ?? [] } : { mode };
      await needVault().setByokMode(tenant, req.params.user, m);
      return m;
    },
  );

  app.post(
    '/v1/billing/vault/rotate',
    {
      config: { roles: ['admin'] },
      schema: { tags: ['byok'], summary: 'Re-seal every stored key under the active master key (FORGE_VAULT_MASTER_KEY; the old one stays in FORGE_VAULT_PREVIOUS_KEYS until this returns)', body: EMPTY_BODY, response: { 200: { type: 'object', properties: { resealed: { type: 'integer' }, active_key_id: { type: 'string' } } }, ...e4, ...e5 } },
    },
    async (req) => {
      if (principalOf(req).tenantId !== null) throw new ApiError('FORGE_ERR_FORBIDDEN_TENANT', 'rotation touches every tenant\'s keys: it needs an admin key bound to all tenants');
      const vault = needVault();
      if (!opts.vaultKeys) throw new ApiError('FORGE_ERR_BYOK_NOT_CONFIGURED', 'no master keys configured');
      const n = await vault.rotate(opts.vaultKeys);
      return { resealed: n, active_key_id: vault.activeKeyId };
    },
  );

  // ---------------------------------------------------------------- Stripe webhook (raw body; the signature is the auth)

  await app.register(async (hook) => {
    // The signature covers the exact bytes Stripe sent: keep the body raw in this scope only.
    hook.removeAllContentTypeParsers();
    hook.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
    hook.post(
      '/v1/billing/stripe/webhook',
      {
        config: { public: true },
        schema: {
          tags: ['billing'],
          summary: 'Stripe webhooks (invoice.payment_succeeded, invoice.payment_failed, customer.subscription.updated), verified with the Stripe-Signature header',
          security: [],
          response: { 200: { type: 'object', properties: { received: { type: 'boolean' }, handled: { type: 'boolean' }, type: { type: 'string' }, reason: { type: 'string' } } }, 400: errorBodySchema, ...e5 },
        },
      },
      async (req) => {
        const stripe = needStripe();
        const raw = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
        const sig = req.headers['stripe-signature'];
        const out = await stripe.handleWebhook(raw, typeof sig === 'string' ? sig : undefined, now());
        return out.handled ? { received: true, handled: true, type: out.type } : { received: true, handled: false, type: out.type, reason: out.reason };
      },
    );
  });

  // ---------------------------------------------------------------- finance: margin per tier

  const reportRow = { type: 'object', additionalProperties: { type: ['string', 'number', 'null'] } } as const;
  app.get<{ Querystring: { month?: string; format?: 'json' | 'csv' } }>(
    '/v1/billing/reports/margin',
    {
      config: { roles: ['finance'] },
      schema: {
        tags: ['billing', 'reports'],
        summary: 'Margin per tier for a UTC month: subscription price (standard or BYOK, per seat) vs LLM cost from the event log (JSON or CSV; a key bound to all tenants)',
        querystring: { type: 'object', additionalProperties: false, properties: { month: { type: 'string', pattern: '^\\d{4}-(0[1-9]|1[0-2])$' }, format: { type: 'string', enum: ['json', 'csv'], default: 'json' } } },
        response: { 200: { type: 'object', properties: { generated_at: { type: 'string' }, from: { type: 'string' }, to: { type: 'string' }, columns: { type: 'array', items: { type: 'string' } }, rows: { type: 'array', items: reportRow }, summary: reportRow } }, ...e4, ...e5 },
      },
    },
    async (req, reply) => {
      if (principalOf(req).tenantId !== null) throw new ApiError('FORGE_ERR_FORBIDDEN_TENANT', 'the margin report covers every tenant: it needs a key bound to all tenants');
      const t = now();
      const from = req.query.month ? Date.parse(`${req.query.month}-01T00:00:00Z`) : monthStartUtc(t);
      const to = nextMonthStartUtc(from);
      const r = await financeReport(catalog, await accounts.list(), opts.usage, { from, to });
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
