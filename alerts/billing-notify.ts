import type { Component } from '../rules/index.ts';
import type { UserRecord } from '../store/index.ts';
import type { AlertDispatcher } from './dispatcher.ts';
import { spendAlertsOf, spendDedupKey, type SpendMetric } from './spend.ts';

/** A burn alert as billing raises it (billing/limits.ts BurnAlert): a threshold of a limit crossed. */
export interface BurnNotice {
  metric: SpendMetric;
  tenantId: string;
  /** Set for a per-user limit (daily spend); absent: the team's (tier executions, monthly cost). */
  userId?: string;
  percent: number;
  value: number;
  limit: number;
  unit: 'count' | 'usd_micros';
  windowStart: number;
  at: number;
}

/** A key-health alert as billing raises it (billing/key-health.ts KeyHealthAlert). */
export interface KeyNotice {
  provider: string;
  agentId: string;
  status: 'provider_error' | 'rate_limited' | 'expired' | 'invalid';
  severity: 'warning' | 'action_required';
  message: string;
}

export interface BillingAlertNotifierDeps {
  dispatcher: Pick<AlertDispatcher, 'notifySpend' | 'raiseKeyHealth'>;
  /** The accounts' users (store/accounts.ts): who a billing user or team is, by email. */
  users: { user(userId: string): Promise<UserRecord | undefined>; userByEmail(email: string): Promise<UserRecord | undefined>; usersOfTenant(tenantId: string): Promise<UserRecord[]> };
  /** The tenant's trailing 7-day burn (USD micros) and the component that cost most. */
  burn(tenantId: string): { weekMicros: number; topComponent: Component };
  log(line: string): void;
  onError(e: unknown, where: string): void;
}

/**
 * Delivers what billing raises on a job (burn alerts at 50/80/100% of a limit, a failing BYOK key) through
 * the dispatcher: spend alerts to the billing account's users (routes.user_spend), key alerts to the user and
 * the team's Slack (routes.key_health). A billing user is the account user of that id (or of that email) in
 * the same tenant; a team's alert goes to every user of the tenant; only verified addresses are used. Without
 * one, the route's configured address gets it, and a log line says so. Once per threshold and period (key,
 * status and day) across restarts: the dispatcher checks the alert log.
 */
export class BillingAlertNotifier {
  readonly #d: BillingAlertNotifierDeps;
  /** Monthly-cost thresholds this process handed to the dispatcher (dedup keys): not looked up again per job. */
  readonly #handed = new Set<string>();

  constructor(d: BillingAlertNotifierDeps) {
    this.#d = d;
  }

  /**
   * What one job raised; resolves once delivered or dead-lettered, never rejects. `monthCharge` (Pay As You
   * Go) is the month's charge so far and the monthly cap: its estimate at this pace is measured against the
   * cap at every threshold reached (derived from totals; each is sent once per month).
   */
  async deliver(e: { tenantId: string; userId: string; burns: readonly BurnNotice[]; key?: KeyNotice | null; monthCharge?: { spentMicros: number; capMicros: number }; at: number }): Promise<void> {
    try {
      if (e.monthCharge) await this.#monthlyCost(e.tenantId, e.monthCharge, e.at);
      if (e.burns.length > 0) {
        const burn = this.#d.burn(e.tenantId);
        for (const b of e.burns) {
          const to = await this.#recipients(e.tenantId, b.userId, `${b.metric} ${b.percent}% alert`);
          await this.#d.dispatcher.notifySpend({
            kind: 'user_spend', tenantId: b.tenantId, ...(b.userId !== undefined ? { userId: b.userId } : {}), ...(to.length > 0 ? { email: to } : {}),
            metric: b.metric, percent: b.percent, value: b.value, limit: b.limit, unit: b.unit, windowStart: b.windowStart, weekMicros: burn.weekMicros, topComponent: burn.topComponent, at: b.at,
          });
        }
      }
      if (e.key) {
        const to = await this.#recipients(e.tenantId, e.userId, `key-health alert (${e.key.provider})`);
        await this.#d.dispatcher.raiseKeyHealth({ kind: 'key_health', tenantId: e.tenantId, userId: e.userId, ...(to.length > 0 ? { email: to } : {}), ...e.key, message: e.key.message.slice(0, 500), at: e.at });
      }
    } catch (err) {
      this.#d.onError(err, 'billing alerts');
    }
  }

  async #monthlyCost(tenantId: string, charge: { spentMicros: number; capMicros: number }, at: number): Promise<void> {
    const burn = this.#d.burn(tenantId);
    const due = spendAlertsOf({ tenantId, executions: 0, executionsLimit: null, monthMicros: charge.spentMicros, monthlyBudgetMicros: charge.capMicros, weekMicros: burn.weekMicros, topComponent: burn.topComponent, now: at }).filter(
      (a) => !this.#handed.has(spendDedupKey(a)),
    );
    if (due.length === 0) return;
    const to = await this.#recipients(tenantId, undefined, 'estimated monthly cost alert');
    for (const a of due) {
      const r = await this.#d.dispatcher.notifySpend({ ...a, ...(to.length > 0 ? { email: to } : {}) });
      // Handed out for good once every destination has it; a failed delivery is tried again on the next job.
      if (r.outcome !== 'dispatched' || !r.deliveries.every((d) => d.status === 'delivered' || d.status === 'duplicate')) continue;
      // Bounded: a process that handed out this many starts over (the dispatcher's own dedup still holds).
      if (this.#handed.size >= 100_000) this.#handed.clear();
      this.#handed.add(spendDedupKey(a));
    }
  }

  /** Verified addresses of the billing user (or, with none named, of the tenant's users); [] falls back to the route's. */
  async #recipients(tenantId: string, userId: string | undefined, what: string): Promise<string[]> {
    let users: UserRecord[];
    if (userId === undefined) users = await this.#d.users.usersOfTenant(tenantId);
    else {
      const u = userId.includes('@') ? await this.#d.users.userByEmail(userId.toLowerCase()) : /^[0-9a-f]{24}$/.test(userId) ? await this.#d.users.user(userId) : undefined;
      users = u ? [u] : [];
    }
    const to = [...new Set(users.filter((u) => u.tenantId === tenantId && u.emailVerified).map((u) => u.email))];
    if (to.length === 0) {
      const who = userId === undefined ? `no user of tenant ${tenantId}` : `billing user ${userId} of tenant ${tenantId} has no account user`;
      this.#d.log(`alerts: ${who} with a verified email: the ${what} goes to the route's configured address`);
    }
    return to;
  }
}
