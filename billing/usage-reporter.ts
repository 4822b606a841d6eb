import { DAY_MS, dayLabel, dayOf } from '../rules/index.ts';
import { dayStartUtc, monthKey, monthStartUtc } from './limits.ts';
import type { UsageBilling } from './usage-billing.ts';
import type { UsageSource } from './metering.ts';
import type { AccountStore } from './subscriptions.ts';
import type { StripeBilling } from './stripe.ts';

/**
 * Reports each subscribed team's executions of a closed UTC day to Stripe as one meter event. The usage id is
 * `executions-<YYYY-MM-DD>`, so a report repeated after a crash or a failed call carries the same identifier
 * and Idempotency-Key and Stripe counts it once. A day is reported once `graceMs` after it ended, so late
 * events of the day are in the log first. Failures go to onError; the loop never rejects.
 */
export class UsageReporter {
  private readonly done = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;

  constructor(
    private readonly deps: {
      stripe: Pick<StripeBilling, 'reportUsage'>;
      accounts: AccountStore;
      usage: UsageSource;
      onError: (err: unknown, where: string) => void;
      /** Default 1 hour. */
      graceMs?: number;
      /** How many closed days back to (re)check, default 2. */
      lookbackDays?: number;
      /** With it, each closed month's invoice is finalized and its lines reported to Stripe (once each). */
      invoices?: Pick<UsageBilling, 'reportToStripe'>;
    },
  ) {}

  /** Reports every closed, not yet reported day in the lookback for every team with a Stripe customer. */
  async runOnce(now: number): Promise<{ reported: number; failed: number }> {
    const grace = this.deps.graceMs ?? 3_600_000;
    const lastClosed = dayStartUtc(now - grace) - DAY_MS;
    let reported = 0;
    let failed = 0;
    let accounts;
    try {
      accounts = (await this.deps.accounts.list()).filter((a) => a.customerId !== null && a.subscriptionId !== null);
    } catch (err) {
      this.deps.onError(err, 'usage reporter: listing accounts');
      return { reported, failed: 1 };
    }
    for (let d = 0; d < (this.deps.lookbackDays ?? 2); d++) {
      const day = lastClosed - d * DAY_MS;
      const dayKey = dayLabel(dayOf(day));
      for (const a of accounts) {
        const k = `${a.tenantId}|${dayKey}`;
        if (this.done.has(k)) continue;
        try {
          const { count } = await this.deps.usage.executions({ tenantId: a.tenantId, from: day, to: day + DAY_MS });
          if (count > 0) await this.deps.stripe.reportUsage({ tenantId: a.tenantId, usageId: `executions-${dayKey}`, value: count, at: day + DAY_MS - 1000 });
          this.done.add(k);
          if (count > 0) reported++;
        } catch (err) {
          failed++;
          this.deps.onError(err, `usage reporter: ${a.tenantId} ${dayKey}`);
        }
      }
    }
    const inv = await this.reportInvoices(now - grace, accounts.map((a) => a.tenantId));
    return { reported: reported + inv.reported, failed: failed + inv.failed };
  }

  /** The month closed before `at`: each team's invoice finalized and reported (skipped when done before). */
  private async reportInvoices(at: number, tenantIds: readonly string[]): Promise<{ reported: number; failed: number }> {
    let reported = 0;
    let failed = 0;
    if (!this.deps.invoices) return { reported, failed };
    const month = monthKey(monthStartUtc(at) - 1);
    for (const tenantId of tenantIds) {
      const k = `${tenantId}|invoice|${month}`;
      if (this.done.has(k)) continue;
      try {
        const r = await this.deps.invoices.reportToStripe(tenantId, month, at);
        this.done.add(k);
        reported += r.sent;
      } catch (err) {
        failed++;
        this.deps.onError(err, `usage reporter: invoice ${tenantId} ${month}`);
      }
    }
    return { reported, failed };
  }

  start(intervalMs: number, clock: () => number = Date.now): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      if (this.running) return; // never two passes at once
      this.running = this.runOnce(clock())
        .then(() => undefined, (err: unknown) => this.deps.onError(err, 'usage reporter'))
        .finally(() => {
          this.running = null;
        });
    }, intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running;
  }
}
