/**
 * What every billing sub-resource shares: the route context, id schemas, error responses and the views
 * (response schemas drop anything not listed, so no secret can leak through them).
 */
import type { FastifyRequest } from 'fastify';
import {
  effectivePlanId,
  monthStartUtc,
  nextMonthStartUtc,
  subscriptionPriceMicros,
  type AccountStore,
  type BillingAccount,
  type BillingCatalog,
  type BillingService,
  type BurnAlert,
  type CreditLedgerApi,
  type KeyHealthAlert,
  type KeyHealthStore,
  type KeyVault,
  type LedgerEntry,
  type LimitDecision,
  type MasterKeys,
  type PlanId,
  type StripeBilling,
  type UsageBilling,
  type UsageSource,
  type VaultKeyView,
} from '../../../billing/index.ts';
import { microsToUsd } from '../../../rules/index.ts';
import { requireTenant } from '../../auth.ts';
import { ApiError, errorBodySchema } from '../../errors.ts';
import { principalOf } from '../../http.ts';
import { DATE_TIME, TENANT_ID } from '../../schemas.ts';

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
  /** Invoices, prepaid dollars, commitments, creator payouts; absent: those routes are not served. */
  usageBilling?: UsageBilling | null;
  /** BYOK key health reported at settle. */
  keyHealth?: KeyHealthStore | null;
  /**
   * What a job raised (burn alerts, a failing key), besides riding in the answer: delivered to the people it
   * concerns (alerts/ BillingAlertNotifier). Must not throw; the answer does not wait for it.
   */
  onJobAlerts?: (e: { tenantId: string; userId: string; burns: readonly BurnAlert[]; key?: KeyHealthAlert | null; monthCharge?: { spentMicros: number; capMicros: number }; at: number }) => void;
  now?: () => number;
  /** Failures behind a 502/503 answer (Stripe, provider, storage) are reported here too. */
  onError?: (e: unknown, where: string) => void;
}

/** The options with the clock resolved and the checks every sub-resource uses. */
export interface BillingRouteContext extends BillingRoutesOptions {
  now: () => number;
  /** The tenant of a path or body field, after checking the caller may act for it. */
  tenantOf: (req: FastifyRequest, tenant: string, field?: string) => string;
  /** Refuses a key bound to one tenant (acts that are the platform's, or span every tenant). */
  requirePlatformKey: (req: FastifyRequest, why: string) => void;
  needVault: () => KeyVault;
  needStripe: () => StripeBilling;
}

export function routeContext(opts: BillingRoutesOptions): BillingRouteContext {
  return {
    ...opts,
    now: opts.now ?? Date.now,
    tenantOf: (req, tenant, field = 'tenant') => {
      requireTenant(principalOf(req), tenant, field);
      return tenant;
    },
    requirePlatformKey: (req, why) => {
      if (principalOf(req).tenantId !== null) throw new ApiError('FORGE_ERR_FORBIDDEN_TENANT', why);
    },
    needVault: () => {
      if (!opts.vault) throw new ApiError('FORGE_ERR_BYOK_NOT_CONFIGURED', 'BYOK is off on this server: set FORGE_VAULT_MASTER_KEY (32 bytes, base64) to enable it');
      return opts.vault;
    },
    needStripe: () => {
      if (!opts.stripe) throw new ApiError('FORGE_ERR_STRIPE_NOT_CONFIGURED', 'Stripe is off on this server: set STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET to enable it');
      return opts.stripe;
    },
  };
}

// ------------------------------------------------------------------ schemas

export const TENANT = TENANT_ID;
export const USER = { type: 'string', pattern: '^[A-Za-z0-9._:@-]{1,128}$' } as const;
export const EXEC = USER;
export const COUNT = { type: 'integer', minimum: 0, maximum: 1_000_000 } as const;
export const DATE = DATE_TIME;
export const MONTH = { type: 'string', pattern: '^\\d{4}-(0[1-9]|1[0-2])$' } as const;
export const nullable = <T extends Record<string, unknown>>(s: T) => ({ anyOf: [s, { type: 'null' }] }) as const;
/** A closed object schema: only the listed properties. */
export const closed = <P extends Record<string, unknown>, R extends readonly string[] = []>(properties: P, required?: R) =>
  ({ type: 'object', additionalProperties: false, ...(required ? { required } : {}), properties }) as const;

export const e4 = { 400: errorBodySchema, 401: errorBodySchema, 403: errorBodySchema, 404: errorBodySchema };
export const e5 = { 502: errorBodySchema, 503: errorBodySchema };
export const tenantParams = closed({ tenant: TENANT }, ['tenant'] as const);
export const userParams = closed({ tenant: TENANT, user: USER }, ['tenant', 'user'] as const);
export const providerParams = closed({ tenant: TENANT, user: USER, provider: { type: 'string', pattern: '^[a-z][a-z0-9_-]{0,31}$' } }, ['tenant', 'user', 'provider'] as const);
export const execParams = closed({ execution_id: EXEC }, ['execution_id'] as const);

export const iso = (t: number | null): string | null => (t === null ? null : new Date(t).toISOString());
export const usdOrNull = (m: number | null): string | null => (m === null ? null : microsToUsd(m));

// ------------------------------------------------------------------ views

const S = { type: 'string' } as const;
const I = { type: 'integer' } as const;
const B = { type: 'boolean' } as const;
const SN = { type: ['string', 'null'] } as const;
const IN = { type: ['integer', 'null'] } as const;

export const planSummary = {
  type: 'object',
  properties: {
    id: S, name: S, price_usd: SN, byok_price_usd: SN, per_seat: B, executions_per_month: IN, throttle_after: IN, overage_available: B, overage_price_usd: SN,
    max_running_agents: IN, sandbox_tries_per_day: IN, daily_spend_cap_usd: SN, max_tokens_per_execution: I, blocked_model_tiers: { type: 'array', items: S },
    channels: { type: 'array', items: S }, log_retention_hours: I, free_monthly_runs: I,
  },
} as const;

export const accountView = {
  type: 'object',
  properties: {
    tenant_id: S, plan_id: S, effective_plan_id: S, byok: B, seats: I, status: S, overage_opt_in: B, customer_id: SN, subscription_id: SN,
    monthly_price_usd: SN, updated_at: S, plan: planSummary,
  },
} as const;

export const alertView = {
  type: 'object',
  properties: { metric: S, percent: I, value: { type: 'number' }, limit: { type: 'number' }, unit: S, user_id: S, window_start: S, dedup_key: S },
} as const;

export const balanceView = { type: 'object', properties: { tenant_id: S, available: I, held: I, open_holds: I, free_runs_left: I } } as const;

export const keyView = { type: 'object', properties: { provider: S, agent_id: S, master_key_id: S, created_at: S, updated_at: S } } as const;

export const limitView = {
  type: 'object',
  properties: {
    decision: { type: 'string', enum: ['allow', 'throttle', 'deny'] }, reason: S, message: S, execution_number: I, overage: B, included: IN, retry_after_ms: I, resets_at: S, limit: I,
  },
} as const;

export const modelView = { type: 'object', properties: { id: S, provider: S, tier: S } } as const;

export function planJson(cat: BillingCatalog, id: PlanId) {
  const p = cat.plans[id];
  return {
    id: p.id, name: p.name, price_usd: usdOrNull(p.priceMicros), byok_price_usd: usdOrNull(p.byokPriceMicros), per_seat: p.perSeat, executions_per_month: p.executionsPerMonth,
    throttle_after: p.throttleAfter, overage_available: p.overageAvailable, overage_price_usd: usdOrNull(p.overagePriceMicros), max_running_agents: p.maxRunningAgents,
    sandbox_tries_per_day: p.sandboxTriesPerDay, daily_spend_cap_usd: usdOrNull(p.dailySpendCapMicros), max_tokens_per_execution: p.maxTokensPerExecution,
    blocked_model_tiers: p.blockedModelTiers, channels: p.channels, log_retention_hours: p.logRetentionHours, free_monthly_runs: p.freeMonthlyRuns,
  };
}

export function accountJson(cat: BillingCatalog, a: BillingAccount) {
  const eff = effectivePlanId(a);
  const price = subscriptionPriceMicros(cat.plans[a.planId], { byok: a.byok, seats: a.seats });
  return {
    tenant_id: a.tenantId, plan_id: a.planId, effective_plan_id: eff, byok: a.byok, seats: a.seats, status: a.status, overage_opt_in: a.overageOptIn,
    customer_id: a.customerId, subscription_id: a.subscriptionId, monthly_price_usd: usdOrNull(price), updated_at: new Date(a.updatedAt).toISOString(), plan: planJson(cat, eff),
  };
}

export const alertJson = (a: BurnAlert) => ({
  metric: a.metric, percent: a.percent, value: a.value, limit: a.limit, unit: a.unit, ...(a.userId !== undefined ? { user_id: a.userId } : {}),
  window_start: new Date(a.windowStart).toISOString(), dedup_key: a.dedupKey,
});

export function limitJson(d: LimitDecision) {
  if (d.decision === 'allow') return { decision: d.decision, execution_number: d.executionNumber, overage: d.overage, included: d.included };
  if (d.decision === 'throttle') return { decision: d.decision, reason: d.reason, retry_after_ms: d.retryAfterMs, execution_number: d.executionNumber };
  return { decision: d.decision, reason: d.reason, message: d.message, resets_at: new Date(d.resetsAt).toISOString(), limit: d.limit };
}

export const keyJson = (k: VaultKeyView) => ({ provider: k.provider, agent_id: k.agentId, master_key_id: k.masterKeyId, created_at: new Date(k.createdAt).toISOString(), updated_at: new Date(k.updatedAt).toISOString() });

export const balanceJson = (tenant: string, b: { available: number; held: number; openHolds: number; freeRunsLeft: number }) => ({
  tenant_id: tenant, available: b.available, held: b.held, open_holds: b.openHolds, free_runs_left: b.freeRunsLeft,
});

/** A UTC month `YYYY-MM` as [from, to) epoch ms; absent = the month of `now`. */
export function monthRange(month: string | undefined, now: number): { from: number; to: number } {
  const from = month ? Date.parse(`${month}-01T00:00:00Z`) : monthStartUtc(now);
  return { from, to: nextMonthStartUtc(from) };
}

/** Model ids are the catalog's: an id it does not list is refused, not routed or stored. */
export function modelIdSchema(catalog: BillingCatalog) {
  return catalog.models.length > 0 ? ({ type: 'string', enum: catalog.models.map((m) => m.id) } as const) : ({ type: 'string', not: {} } as const);
}
