import { microsToUsd, type Micros } from '../rules/index.ts';
import { BillingError } from './errors.ts';
import { KeyedSerial } from './serial.ts';
import { MemoryUsageJournal, type UsageJournal } from './journal.ts';
import { keyHealthAlert, type KeyHealthAlert, type KeyHealthReport, type KeyHealthStore, type KeyStatus } from './key-health.ts';
import { checkId, creditsFor, type CreditLedgerApi } from './credits/ledger.ts';
import type { BillingHaltGate } from './halt-gate.ts';
import {
  burnAlerts,
  checkDailySpend,
  checkExecutionLimit,
  checkModelAllowed,
  checkRunningAgents,
  checkSandboxTry,
  checkTokens,
  dayStartUtc,
  monthStartUtc,
  nextDayStartUtc,
  nextMonthStartUtc,
  type BurnAlert,
  type LimitDecision,
} from './limits.ts';
import type { UsageSource } from './metering.ts';
import type { BillingCatalog, CreditPack, ModelInfo, ModelTier, Plan, PlanId } from './plans.ts';
import { findModel, routeModel, type RouteOutcome, type RoutingPreference } from './routing.ts';
import { effectivePlanId, newAccount, type AccountStore, type BillingAccount } from './subscriptions.ts';
import type { KeyRouting, KeyVault } from './vault/vault.ts';

/** A routing answer; with a user, whose key the call would use. */
export type RouteAnswer = RouteOutcome & { keySource?: 'byok' | 'platform' };

export interface StartJobInput {
  tenantId: string;
  userId: string;
  /** Unique per execution; also the credit hold id. */
  executionId: string;
  runId?: string;
  agentId?: string;
  /** Either a skill (the router picks the model) or an explicit model id. */
  skill?: string;
  model?: string;
  preference?: RoutingPreference;
  /** Input + output tokens the execution may use. */
  maxTokens: number;
  /** Sandbox tries the execution may make. */
  sandboxTries?: number;
  /** Estimated platform-key LLM spend, USD micros (0 when unknown). */
  estimatedLlmMicros?: Micros;
  /** The caller's counts that only it knows (running agents of the team, the user's sandbox tries today). */
  runningAgents?: number;
  sandboxTriesToday?: number;
  now: number;
}

export type StartJobOutcome =
  | {
      decision: 'allow';
      executionId: string;
      planId: string;
      model: ModelInfo;
      /** Which key the call uses; the key itself is a SecretString (redacted in JSON and logs). */
      key: KeyRouting | { source: 'platform'; provider: string; model: string; countedAgainstTier: true; reason: 'no_vault' };
      hold: { unit: 'credit' | 'run'; amount: number } | null;
      limit: Extract<LimitDecision, { decision: 'allow' }>;
      alerts: BurnAlert[];
      /**
       * Pay As You Go (with its pricing known): the month's charge so far, this execution included (before the
       * cap), and the monthly cap, USD micros; what the estimated monthly cost alerts are measured on.
       */
      monthCharge?: { spentMicros: Micros; capMicros: Micros };
    }
  | { decision: 'throttle'; reason: 'throttled'; retryAfterMs: number; message: string }
  | {
      decision: 'deny';
      reason:
        | 'halted'
        | 'limit_reached'
        | 'daily_spend_cap'
        | 'max_tokens'
        | 'model_blocked'
        | 'unknown_model'
        | 'unknown_skill'
        | 'no_model_meets_threshold'
        | 'tier_blocked'
        | 'agents_limit'
        | 'sandbox_tries_reached'
        | 'insufficient_credits';
      message: string;
      resetsAt?: number;
    };

/** A team's execution usage this month and the decision the next execution would get (epoch ms, USD micros). */
export interface UsageSummary {
  planId: string;
  monthStart: number;
  monthEnd: number;
  executions: number;
  lastExecutionAt: number | null;
  /** Included executions this month (x seats); null = unlimited. */
  included: number | null;
  throttleAfter: number | null;
  overageOptIn: boolean;
  next: LimitDecision;
  user?: { userId: string; platformSpendTodayMicros: Micros; dailySpendCapMicros: Micros | null; resetsAt: number };
}

export interface SettleJobInput {
  tenantId: string;
  userId: string;
  executionId: string;
  /** What the execution used. */
  modelCalls?: Partial<Record<ModelTier, number>>;
  sandboxTries?: number;
  /** Actual LLM spend, USD micros. */
  llmMicros: Micros;
  /** What the provider said about the user's own key (BYOK executions): recorded per key, alerted unless ok. */
  keyStatus?: KeyStatus;
  keyDetail?: string;
  now: number;
}

export interface SettleJobOutcome {
  charged: number;
  refunded: number;
  shortfall: number;
  alerts: BurnAlert[];
  /** The alert a BYOK key report raised (not ok). */
  keyAlert?: KeyHealthAlert;
}

interface Pending {
  tenantId: string;
  executionId: string;
  userId: string;
  at: number;
  estimateMicros: Micros;
  platformKey: boolean;
  tier: ModelTier;
  /** The key's provider and agent ('*' = the user's default key), for key health. */
  provider: string;
  keyAgent: string;
}

/**
 * The billing decisions for one execution, in the order a runner meets them: halt, plan limits, guardrails,
 * model and key routing, credits. Admitted-but-unfinished executions are counted in-process on top of the
 * event log, so the limit holds between admission and the event's arrival in the log.
 */
export class BillingService {
  private readonly pending = new Map<string, Pending>();
  /** Starts of one tenant, in order. */
  private readonly starts = new KeyedSerial();
  /** Admissions and settlements in shared state: the throttle's clock, and per-user spend when the log has no user ids. */
  private readonly journal: UsageJournal;

  constructor(
    private readonly deps: {
      catalog: BillingCatalog;
      accounts: AccountStore;
      usage: UsageSource;
      ledger: CreditLedgerApi;
      gate?: BillingHaltGate;
      vault?: KeyVault;
      /** Called for every finalized execution (e.g. MemoryUsageSource.record, or nothing when the log meters). */
      onFinalized?: (e: { executionId: string; tenantId: string; userId: string; at: number; llmMicros: Micros; byok: boolean }) => void;
      /**
       * Per-user metering from the event log (its user_id column, default true). With false, a user's daily
       * spend is counted from the journal's settled executions and executions per user are not asked of the log.
       */
      perUserFromLog?: boolean;
      /** Admissions and settlements (default in-process); ClickHouseUsageJournal shares them across processes and restarts. */
      journal?: UsageJournal;
      /** Where BYOK key reports at settle are kept; absent: they are alerted only. */
      keyHealth?: KeyHealthStore;
      /** Pay As You Go's rate and monthly cap (usage pricing): a payg job's answer then carries the month's charge. */
      payAsYouGo?: { perExecutionMicros: Micros; monthlyCapMicros: Micros };
    },
  ) {
    this.journal = deps.journal ?? new MemoryUsageJournal();
  }

  async account(tenantId: string, now: number): Promise<BillingAccount> {
    return (await this.deps.accounts.get(tenantId)) ?? newAccount(tenantId, now);
  }

  async plan(tenantId: string, now: number): Promise<Plan> {
    return this.deps.catalog.plans[effectivePlanId(await this.account(tenantId, now))];
  }

  /**
   * Sets a team's plan by hand (a contract of the platform's, no Stripe subscription). A team subscribed
   * through Stripe changes plan there (FORGE_ERR_BILLING_CONFLICT) when Stripe is on (`stripeManaged`).
   */
  async setPlanByHand(tenantId: string, change: { planId: PlanId; seats?: number; byok?: boolean }, now: number, stripeManaged: boolean): Promise<BillingAccount> {
    const a = await this.account(tenantId, now);
    if (a.subscriptionId && stripeManaged) {
      throw new BillingError('FORGE_ERR_BILLING_CONFLICT', `the team is subscribed through Stripe (${a.subscriptionId}); change the plan there or with POST /v1/billing/tenants/${tenantId}/subscription`, { field: 'planId' });
    }
    const plan = this.deps.catalog.plans[change.planId];
    const byok = change.byok ?? false;
    if (byok && plan.byokPriceMicros === null && plan.priceMicros !== null) throw new BillingError('FORGE_ERR_BILLING_INPUT', `${plan.name} has no BYOK price`, { field: 'byok' });
    if (change.seats !== undefined && change.seats > 1 && !plan.perSeat) throw new BillingError('FORGE_ERR_BILLING_INPUT', `${plan.name} is not priced per seat; leave seats out`, { field: 'seats' });
    const next: BillingAccount = { ...a, planId: plan.id, byok, seats: plan.perSeat ? (change.seats ?? a.seats) : 1, status: plan.id === 'free' ? 'none' : 'active', updatedAt: now };
    await this.deps.accounts.put(next);
    return next;
  }

  /** Credits a paid credit pack once per purchase id (a replay credits nothing more). */
  async purchasePack(tenantId: string, packId: string, purchaseId: string, now: number): Promise<{ pack: CreditPack; available: number; replay: boolean }> {
    const pack = this.deps.catalog.credits.packs[packId];
    if (!pack) throw new BillingError('FORGE_ERR_BILLING_INPUT', 'unknown credit pack', { field: 'pack' });
    const r = await this.deps.ledger.purchase(tenantId, purchaseId, pack.credits, now, `pack ${pack.id} ${microsToUsd(pack.priceMicros)} USD`);
    return { pack, available: r.available, replay: r.replay };
  }

  /** Which model a skill runs on for this team, and with a user, whose key it would use. */
  async route(tenantId: string, skill: string, opts: { preference?: RoutingPreference; userId?: string; agentId?: string }, now: number): Promise<RouteAnswer> {
    const plan = await this.plan(tenantId, now);
    const r = routeModel(this.deps.catalog, skill, { plan, ...(opts.preference ? { preference: opts.preference } : {}) });
    if (!r.ok) return r;
    if (opts.userId === undefined) return r;
    const vault = this.deps.vault;
    const keySource = vault
      ? (await vault.routeKey({ tenantId, userId: opts.userId, ...(opts.agentId ? { agentId: opts.agentId } : {}), model: r.model.id, provider: r.model.provider })).source
      : 'platform';
    return { ...r, keySource };
  }

  /** Opt in or out of overage instead of throttling (plans that offer it). */
  async setOverage(tenantId: string, optIn: boolean, now: number): Promise<BillingAccount> {
    const a = await this.account(tenantId, now);
    const plan = this.deps.catalog.plans[effectivePlanId(a)];
    // On Pay As You Go the opt-in means: move me to Pro when a month would have cost less there.
    if (optIn && !plan.overageAvailable && plan.id !== 'payg') throw new BillingError('FORGE_ERR_BILLING_INPUT', `${plan.name} has no overage`, { field: 'overageOptIn' });
    const next = { ...a, overageOptIn: optIn, updatedAt: now };
    await this.deps.accounts.put(next);
    return next;
  }

  /** Executions of the team this month (log + admitted in-process), and of one user when asked. */
  async executionUsage(tenantId: string, now: number, userId?: string): Promise<{ count: number; lastAt: number | null }> {
    const from = monthStartUtc(now);
    const to = nextMonthStartUtc(now);
    const logged = await this.deps.usage.executions({ tenantId, ...(userId !== undefined && this.deps.perUserFromLog !== false ? { userId } : {}), from, to });
    let count = logged.count;
    const admitted = userId === undefined ? await this.journal.lastAdmittedAt(tenantId, from, to) : null;
    let lastAt = admitted !== null ? Math.max(logged.lastAt ?? admitted, admitted) : logged.lastAt;
    for (const p of this.pending.values()) {
      if (p.tenantId !== tenantId || (userId !== undefined && p.userId !== userId) || p.at < from || p.at >= to) continue;
      count++;
      lastAt = lastAt === null ? p.at : Math.max(lastAt, p.at);
    }
    return { count, lastAt };
  }

  /**
   * Starts an execution. One tenant's starts run one at a time (in this process): each sees the ones before
   * it among the month's executions and the user's day spend, so concurrent starts cannot pass a limit.
   */
  async startJob(input: StartJobInput): Promise<StartJobOutcome> {
    checkId('tenantId', input.tenantId);
    if ((input.skill === undefined) === (input.model === undefined)) throw new BillingError('FORGE_ERR_BILLING_INPUT', 'give exactly one of skill (the router picks the model) or model', { field: 'skill' });
    return this.starts.run(input.tenantId, () => this.startJobInOrder(input));
  }

  private async startJobInOrder(input: StartJobInput): Promise<StartJobOutcome> {
    const { tenantId, userId, now } = input;
    checkId('userId', userId);
    checkId('executionId', input.executionId);
    if (!(Number.isSafeInteger(input.maxTokens) && input.maxTokens > 0)) throw new BillingError('FORGE_ERR_BILLING_INPUT', 'maxTokens must be an integer > 0', { field: 'maxTokens' });
    if (this.pending.has(pendingKey(tenantId, input.executionId))) throw new BillingError('FORGE_ERR_BILLING_INPUT', `execution ${input.executionId} already started`, { field: 'executionId' });
    const gate = this.deps.gate;
    if (gate) {
      await gate.prime(tenantId, input.runId);
      const g = gate.check(tenantId, input.runId);
      if (!g.ok) return { decision: 'deny', reason: 'halted', message: `${g.state} on ${g.scope}: ${g.reason}` };
    }
    const acct = await this.account(tenantId, now);
    const plan = this.deps.catalog.plans[effectivePlanId(acct)];
    const deny = (d: { reason: string; message: string; resetsAt?: number }): StartJobOutcome =>
      ({ decision: 'deny', reason: d.reason, message: d.message, ...(d.resetsAt !== undefined ? { resetsAt: d.resetsAt } : {}) }) as StartJobOutcome;

    const tokens = checkTokens(plan, input.maxTokens);
    if (tokens.decision === 'deny') return deny(tokens);
    if (input.runningAgents !== undefined) {
      const a = checkRunningAgents(plan, input.runningAgents);
      if (a.decision === 'deny') return deny(a);
    }
    if ((input.sandboxTries ?? 0) > 0 && input.sandboxTriesToday !== undefined) {
      const s = checkSandboxTry(plan, input.sandboxTriesToday, now);
      if (s.decision === 'deny') return deny(s);
    }

    let model: ModelInfo;
    if (input.model !== undefined) {
      const m = findModel(this.deps.catalog, input.model);
      const ok = checkModelAllowed(plan, m, input.model);
      if (ok.decision === 'deny') return deny(ok);
      model = m as ModelInfo;
    } else if (input.skill !== undefined) {
      const r = routeModel(this.deps.catalog, input.skill, { plan, ...(input.preference ? { preference: input.preference } : {}) });
      if (!r.ok) return deny(r);
      model = r.model;
    } else {
      throw new BillingError('FORGE_ERR_BILLING_INPUT', 'one of skill or model is required', { field: 'skill' });
    }

    const key: Extract<StartJobOutcome, { decision: 'allow' }>['key'] = this.deps.vault
      ? await this.deps.vault.routeKey({ tenantId, userId, ...(input.agentId !== undefined ? { agentId: input.agentId } : {}), model: model.id, provider: model.provider })
      : { source: 'platform', provider: model.provider, model: model.id, countedAgainstTier: true, reason: 'no_vault' };
    const platformKey = key.source === 'platform';
    const estimate = platformKey ? Math.max(0, input.estimatedLlmMicros ?? 0) : 0;

    const dayFrom = dayStartUtc(now);
    let spentToday = 0;
    if (platformKey) {
      spentToday = await this.userSpend(tenantId, userId, dayFrom, nextDayStartUtc(now));
      const cap = checkDailySpend(plan, spentToday, estimate, now);
      if (cap.decision === 'deny') return deny(cap);
    }

    const used = await this.executionUsage(tenantId, now);
    const limit = checkExecutionLimit(
      plan,
      { count: used.count, monthStart: monthStartUtc(now), lastExecutionAt: used.lastAt, seats: acct.seats, overageOptIn: acct.overageOptIn },
      now,
    );
    if (limit.decision === 'throttle') {
      return { decision: 'throttle', reason: 'throttled', retryAfterMs: limit.retryAfterMs, message: `${plan.name}: past ${limit.throttleAfter} executions this month, one per ${plan.throttleIntervalMs / 1000} s` };
    }
    if (limit.decision === 'deny') return deny({ reason: limit.reason, message: limit.message, resetsAt: limit.resetsAt });

    // Credits: BYOK model calls cost no model credits (the user pays the provider); sandbox tries always do.
    const credits = creditsFor(this.deps.catalog, {
      modelCalls: platformKey ? { [model.tier]: 1 } : {},
      sandboxTries: input.sandboxTries ?? 0,
    });
    let hold: { unit: 'credit' | 'run'; amount: number } | null = null;
    if (credits > 0) {
      const h = await this.deps.ledger.hold({
        owner: tenantId,
        holdId: input.executionId,
        credits,
        freeMonthlyRuns: plan.freeMonthlyRuns,
        ...(input.runId !== undefined ? { runId: input.runId } : {}),
        now,
        memo: `${model.tier} ${model.id}`,
      });
      if (!h.ok) {
        return h.reason === 'halted'
          ? deny({ reason: 'halted', message: `${h.state} on ${h.scope}` })
          : deny({ reason: 'insufficient_credits', message: `needs ${h.needed} credits, ${h.available} available` });
      }
      hold = { unit: h.unit, amount: h.amount };
    }

    this.pending.set(pendingKey(tenantId, input.executionId), {
      tenantId, executionId: input.executionId, userId, at: now, estimateMicros: estimate, platformKey, tier: model.tier, provider: key.provider,
      keyAgent: key.source === 'byok' && key.agentSpecific && input.agentId !== undefined ? input.agentId : '*',
    });
    try {
      await this.journal.admitted({ tenantId, executionId: input.executionId, userId, at: now });
    } catch (e) {
      // Not admitted where every process can see it: give the hold back rather than run unclocked.
      await this.cancelJob(tenantId, input.executionId, now).catch(() => undefined);
      throw e;
    }
    const seats = plan.perSeat ? Math.max(1, acct.seats) : 1;
    const alerts = burnAlerts({
      percents: this.deps.catalog.burnAlertPercents,
      metric: 'executions_month',
      tenantId,
      before: used.count,
      after: used.count + 1,
      limit: plan.executionsPerMonth === null ? null : plan.executionsPerMonth * seats,
      unit: 'count',
      windowStart: monthStartUtc(now),
      now,
    });
    const payg = plan.id === 'payg' ? this.deps.payAsYouGo : undefined;
    const monthCharge = payg ? { monthCharge: { spentMicros: (used.count + 1) * payg.perExecutionMicros, capMicros: payg.monthlyCapMicros } } : {};
    return { decision: 'allow', executionId: input.executionId, planId: plan.id, model, key, hold, limit, alerts, ...monthCharge };
  }

  /** Finalizes an execution: deducts its credits (refunding the rest of the hold) and returns spend alerts. */
  async settleJob(input: SettleJobInput): Promise<SettleJobOutcome> {
    // Keyed by tenant: a caller naming another tenant's execution finds nothing (and closes nothing).
    const key = pendingKey(input.tenantId, input.executionId);
    const p = this.pending.get(key);
    if (!p) return this.settleElsewhere(input);
    // The spend is the user's who started the job; a settle cannot book it to someone else.
    if (input.userId !== p.userId) throw new BillingError('FORGE_ERR_BILLING_INPUT', `execution ${input.executionId} was started by another user`, { field: 'userId' });
    // Claimed before the first await: a second settle (a retry) or a cancel racing this one finds nothing.
    this.pending.delete(key);
    const credits = creditsFor(this.deps.catalog, { modelCalls: p.platformKey ? (input.modelCalls ?? { [p.tier]: 1 }) : {}, sandboxTries: input.sandboxTries ?? 0 });
    const dayFrom = dayStartUtc(p.at);
    let s: Awaited<ReturnType<CreditLedgerApi['settle']>>;
    let dailyCap: Micros | null = null;
    let before = 0;
    try {
      // What the spend alerts need is read first (platform keys only), so a failed read leaves the job open.
      if (p.platformKey) {
        dailyCap = (await this.plan(input.tenantId, input.now)).dailySpendCapMicros;
        before = await this.userSpend(input.tenantId, input.userId, dayFrom, nextDayStartUtc(p.at), input.executionId);
      }
      // Journaled first (idempotent per execution): a retry after a failed ledger call writes the same row.
      await this.journal.settled({ tenantId: input.tenantId, executionId: input.executionId, userId: input.userId, at: p.at, llmMicros: input.llmMicros, byok: !p.platformKey });
      s = await this.deps.ledger.settle(input.tenantId, input.executionId, credits, input.now);
    } catch (e) {
      this.pending.set(key, p); // not settled: it stays open for a retry
      throw e;
    }
    this.deps.onFinalized?.({ executionId: input.executionId, tenantId: input.tenantId, userId: input.userId, at: p.at, llmMicros: input.llmMicros, byok: !p.platformKey });
    const alerts = p.platformKey
      ? burnAlerts({
          percents: this.deps.catalog.burnAlertPercents,
          metric: 'daily_spend',
          tenantId: input.tenantId,
          userId: input.userId,
          before,
          after: before + input.llmMicros,
          limit: dailyCap,
          unit: 'usd_micros',
          windowStart: dayFrom,
          now: input.now,
        })
      : [];
    const keyAlert = p.platformKey || input.keyStatus === undefined ? null : await this.keyReport(p, input);
    const extra = keyAlert ? { keyAlert } : {};
    if (!s.ok) return { charged: 0, refunded: 0, shortfall: 0, alerts, ...extra };
    return { charged: s.charged, refunded: s.refunded, shortfall: s.shortfall, alerts, ...extra };
  }

  /** Records what the runner reported about the user's key and returns the alert it raises. */
  private async keyReport(p: Pending, input: SettleJobInput): Promise<KeyHealthAlert | null> {
    const report: KeyHealthReport = {
      tenantId: p.tenantId, userId: p.userId, provider: p.provider, agentId: p.keyAgent, executionId: p.executionId, status: input.keyStatus ?? 'ok', detail: (input.keyDetail ?? '').slice(0, 500), at: input.now,
    };
    await this.deps.keyHealth?.record(report);
    return keyHealthAlert(report);
  }

  /**
   * Settles an execution this process did not start (another API process, or before a restart): its hold is
   * in the shared ledger but what it was (tier, key) is not known here. It is charged what the runner reports
   * (model calls, sandbox tries), or its whole hold when the runner reports nothing; no spend alerts.
   */
  private async settleElsewhere(input: SettleJobInput): Promise<SettleJobOutcome> {
    const h = await this.deps.ledger.openHold(input.tenantId, input.executionId);
    if (!h) throw new BillingError('FORGE_ERR_BILLING_INPUT', `execution ${input.executionId} is not open`, { field: 'executionId' });
    const reported = input.modelCalls !== undefined || input.sandboxTries !== undefined;
    const credits = reported ? creditsFor(this.deps.catalog, { modelCalls: input.modelCalls ?? {}, sandboxTries: input.sandboxTries ?? 0 }) : h.amount;
    const s = await this.deps.ledger.settle(input.tenantId, input.executionId, credits, input.now);
    if (!s.ok) throw new BillingError('FORGE_ERR_BILLING_INPUT', `execution ${input.executionId} is not open`, { field: 'executionId' });
    this.deps.onFinalized?.({ executionId: input.executionId, tenantId: input.tenantId, userId: input.userId, at: h.at, llmMicros: input.llmMicros, byok: false });
    return { charged: s.charged, refunded: s.refunded, shortfall: s.shortfall, alerts: [] };
  }

  /** Settles an execution this service started; an unknown one is FORGE_ERR_BILLING_NOT_FOUND. */
  async settleOpenJob(input: SettleJobInput): Promise<SettleJobOutcome> {
    if (!(await this.isOpen(input.tenantId, input.executionId))) throw new BillingError('FORGE_ERR_BILLING_NOT_FOUND', 'no open execution with this id for this tenant', { field: 'executionId' });
    return this.settleJob(input);
  }

  /** Cancels an open execution; an unknown one is FORGE_ERR_BILLING_NOT_FOUND. */
  async cancelOpenJob(tenantId: string, executionId: string, now: number): Promise<void> {
    if (!(await this.cancelJob(tenantId, executionId, now))) throw new BillingError('FORGE_ERR_BILLING_NOT_FOUND', 'no open execution with this id for this tenant', { field: 'executionId' });
  }

  /** Is the execution started and not yet settled or cancelled (for this tenant)? Started here, or elsewhere with its hold in the shared ledger. */
  async isOpen(tenantId: string, executionId: string): Promise<boolean> {
    if (this.pending.has(pendingKey(tenantId, executionId))) return true;
    return (await this.deps.ledger.openHold(tenantId, executionId)) !== undefined;
  }

  /** Cancels an execution that did not run: the whole hold is refunded and it no longer counts. False when it was not open. */
  async cancelJob(tenantId: string, executionId: string, now: number): Promise<boolean> {
    const key = pendingKey(tenantId, executionId);
    const p = this.pending.get(key);
    if (!p) {
      // Started elsewhere (another process, or before a restart): release its hold in the shared ledger.
      if (!(await this.deps.ledger.openHold(tenantId, executionId))) return false;
      return (await this.deps.ledger.release(tenantId, executionId, now)).ok;
    }
    this.pending.delete(key);
    try {
      await this.deps.ledger.release(tenantId, executionId, now);
    } catch (e) {
      this.pending.set(key, p); // the hold is still there: keep it open so a retry can release it
      throw e;
    }
    return true;
  }

  /**
   * What a runner or finance asks before starting work: the team's executions this month and the decision the
   * next one would get (allow / throttle / limit reached with its reset time); with a user, their platform-key
   * LLM spend today against the plan's daily cap. Reads only; admits nothing.
   */
  async usageSummary(tenantId: string, now: number, userId?: string): Promise<UsageSummary> {
    checkId('tenantId', tenantId);
    if (userId !== undefined) checkId('userId', userId);
    const acct = await this.account(tenantId, now);
    const plan = this.deps.catalog.plans[effectivePlanId(acct)];
    const used = await this.executionUsage(tenantId, now);
    const seats = plan.perSeat ? Math.max(1, acct.seats) : 1;
    const next = checkExecutionLimit(
      plan,
      { count: used.count, monthStart: monthStartUtc(now), lastExecutionAt: used.lastAt, seats: acct.seats, overageOptIn: acct.overageOptIn },
      now,
    );
    const out: UsageSummary = {
      planId: plan.id,
      monthStart: monthStartUtc(now),
      monthEnd: nextMonthStartUtc(now),
      executions: used.count,
      lastExecutionAt: used.lastAt,
      included: plan.executionsPerMonth === null ? null : plan.executionsPerMonth * seats,
      throttleAfter: plan.throttleAfter === null ? null : plan.throttleAfter * seats,
      overageOptIn: acct.overageOptIn,
      next,
    };
    if (userId !== undefined) {
      out.user = {
        userId,
        platformSpendTodayMicros: await this.userSpend(tenantId, userId, dayStartUtc(now), nextDayStartUtc(now)),
        dailySpendCapMicros: plan.dailySpendCapMicros,
        resetsAt: nextDayStartUtc(now),
      };
    }
    return out;
  }

  /** Platform-key spend of a user in the window: settled (log or in-process) + estimates of open executions. */
  private async userSpend(tenantId: string, userId: string, from: number, to: number, exclude?: string): Promise<Micros> {
    let s =
      this.deps.perUserFromLog === false
        ? await this.journal.platformSpend(tenantId, userId, from, to)
        : await this.deps.usage.platformLlmMicros({ tenantId, userId, from, to });
    for (const p of this.pending.values()) {
      if (p.executionId !== exclude && p.tenantId === tenantId && p.userId === userId && p.platformKey && p.at >= from && p.at < to) s += p.estimateMicros;
    }
    return s;
  }
}

function pendingKey(tenantId: string, executionId: string): string {
  return `${tenantId}\u0000${executionId}`;
}
