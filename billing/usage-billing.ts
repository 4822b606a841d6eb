import type Stripe from 'stripe';
import type { Micros } from '../rules/index.ts';
import { BillingError } from './errors.ts';
import { buildInvoice, type BillableEvent, type Invoice } from './invoice.ts';
import { monthKey, nextMonthStartUtc } from './limits.ts';
import type { BillingCatalog } from './plans.ts';
import type { StripeBilling } from './stripe.ts';
import { effectivePlanId, newAccount, type AccountStore } from './subscriptions.ts';
import { commitmentTier, payoutDecision, type UsagePricing } from './usage-pricing.ts';
import type { Commitment, PayoutRow, UsageBillingStore } from './usage-stores.ts';

const MONTH_RE = /^(\d{4})-(0[1-9]|1[0-2])$/;

/** [from, to) epoch ms of a `YYYY-MM` UTC month. */
export function monthBounds(month: string): { from: number; to: number } {
  const m = MONTH_RE.exec(month);
  if (!m) throw new BillingError('FORGE_ERR_BILLING_INPUT', 'a month is YYYY-MM', { field: 'month' });
  const from = Date.UTC(Number(m[1]), Number(m[2]) - 1, 1);
  return { from, to: nextMonthStartUtc(from) };
}

/** The month `n` months after `month` (`YYYY-MM`). */
export function addMonths(month: string, n: number): string {
  const { from } = monthBounds(month);
  const d = new Date(from);
  return monthKey(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + n, 1));
}

/** Where invoices read the cost log. */
export interface BillableEventSource {
  billableEvents(tenantId: string, from: number, to: number): Promise<BillableEvent[]>;
}

export interface CreatorStatement {
  creator: string;
  month: string;
  earnedMicros: Micros;
  lines: { tenantId: string; skill: string; mode: 'share' | 'fixed'; executions: number; revenueMicros: Micros; creatorMicros: Micros }[];
}

/**
 * Usage-based billing over the cost log: monthly invoices (drafts for an open month, finalized once a month
 * has closed), prepaid dollars bought through Stripe Checkout, commitments, the Stripe report of invoice
 * lines, creator statements and payouts. Every effect is keyed by what caused it, so a retry, a replayed
 * webhook, a restart or a second process changes nothing twice.
 */
export class UsageBilling {
  constructor(
    private readonly deps: {
      catalog: BillingCatalog;
      pricing: UsagePricing;
      accounts: AccountStore;
      events: BillableEventSource;
      store: UsageBillingStore;
      stripe?: StripeBilling | null;
    },
  ) {
    deps.stripe?.onCheckout((session, now) => this.creditCheckout(session, now));
  }

  get pricing(): UsagePricing {
    return this.deps.pricing;
  }

  /** The team's latest commitment (running, future or past). */
  commitment(tenantId: string): Promise<Commitment | undefined> {
    return this.deps.store.commitment(tenantId);
  }

  /** The discount of a committed volume, percent (0 below the lowest tier). */
  discountPercent(executionsPerMonth: number): number {
    return commitmentTier(this.deps.pricing.commitments.tiers, executionsPerMonth)?.discountPercent ?? 0;
  }

  /** A team's prepaid entries, oldest first. */
  prepaidEntries(tenantId: string): ReturnType<UsageBillingStore['prepaidEntries']> {
    return this.deps.store.prepaidEntries(tenantId);
  }

  /** The commitment billed in `month`, if one covers it. */
  async activeCommitment(tenantId: string, month: string): Promise<Commitment | undefined> {
    const c = await this.deps.store.commitment(tenantId);
    if (!c) return undefined;
    return month >= c.startMonth && month < addMonths(c.startMonth, c.termMonths) ? c : undefined;
  }

  /**
   * Commits a team to executions per month from a start month for a term (at least the minimum). A running
   * commitment may be raised (a new term from the new start) but not lowered nor ended before its term.
   */
  async setCommitment(tenantId: string, c: { executionsPerMonth: number; startMonth: string; termMonths: number }, now: number): Promise<Commitment> {
    const cfg = this.deps.pricing.commitments;
    monthBounds(c.startMonth);
    if (!commitmentTier(cfg.tiers, c.executionsPerMonth)) throw new BillingError('FORGE_ERR_BILLING_INPUT', `a commitment starts at ${cfg.tiers[0]?.minExecutions} executions a month`, { field: 'executionsPerMonth' });
    if (!(Number.isInteger(c.termMonths) && c.termMonths >= cfg.minTermMonths)) throw new BillingError('FORGE_ERR_BILLING_INPUT', `the term is at least ${cfg.minTermMonths} months`, { field: 'termMonths' });
    if (c.startMonth < monthKey(now)) throw new BillingError('FORGE_ERR_BILLING_INPUT', 'a commitment starts this month or later', { field: 'startMonth' });
    const running = await this.activeCommitment(tenantId, monthKey(now));
    if (running && c.executionsPerMonth < running.executionsPerMonth) {
      throw new BillingError('FORGE_ERR_BILLING_CONFLICT', `the running commitment (${running.executionsPerMonth} a month until ${addMonths(running.startMonth, running.termMonths)}) can be raised, not lowered`, { field: 'executionsPerMonth' });
    }
    const next: Commitment = { tenantId, ...c, createdAt: now };
    await this.deps.store.putCommitment(next);
    return next;
  }

  /** The invoice of a month: the finalized one once stored, else a draft from the cost log as it stands. */
  async invoice(tenantId: string, month: string, now: number): Promise<{ invoice: Invoice; final: boolean }> {
    const stored = await this.deps.store.invoice(tenantId, month);
    if (stored) return { invoice: stored, final: true };
    const { from } = monthBounds(month);
    if (from > now) throw new BillingError('FORGE_ERR_BILLING_INPUT', 'that month has not started', { field: 'month' });
    return { invoice: await this.compute(tenantId, month, now), final: false };
  }

  private async compute(tenantId: string, month: string, now: number): Promise<Invoice> {
    const { from, to } = monthBounds(month);
    const { catalog, pricing, store } = this.deps;
    const acct = (await this.deps.accounts.get(tenantId)) ?? newAccount(tenantId, now);
    const [events, commitment, prepaid] = await Promise.all([this.deps.events.billableEvents(tenantId, from, to), this.activeCommitment(tenantId, month), store.prepaidBalance(tenantId, appliedEntry(month))]);
    return buildInvoice({
      tenantId, month, from, to, plan: catalog.plans[effectivePlanId(acct)], pro: catalog.plans.pro, pricing, events, prepaidMicros: Math.max(0, prepaid),
      account: { seats: acct.seats, byok: acct.byok, overageOptIn: acct.overageOptIn }, commitment: commitment ? { executionsPerMonth: commitment.executionsPerMonth } : null,
    });
  }

  /**
   * Finalizes a closed month once: the invoice is stored and the prepaid dollars it used are taken from the
   * balance (one entry per invoice). Finalizing again returns the stored invoice.
   */
  async finalize(tenantId: string, month: string, now: number): Promise<Invoice> {
    const { to } = monthBounds(month);
    if (now < to) throw new BillingError('FORGE_ERR_BILLING_CONFLICT', `${month} is still open; it can be finalized from ${new Date(to).toISOString()}`, { field: 'month' });
    const stored = await this.deps.store.invoice(tenantId, month);
    if (stored) return stored;
    const inv = await this.compute(tenantId, month, now);
    await this.deps.store.saveInvoice(inv, now);
    await this.upgradeIfCheaper(tenantId, inv, now);
    if (inv.creditsAppliedMicros > 0) await this.deps.store.prepaid(tenantId, appliedEntry(month), 'applied', -inv.creditsAppliedMicros, now, `invoice ${month}`);
    return inv;
  }

  /** A Pay As You Go team that opted in moves to Pro once a finalized month would have cost less there. */
  private async upgradeIfCheaper(tenantId: string, inv: Invoice, now: number): Promise<void> {
    if (!inv.notices.some((n) => n.code === 'payg_more_than_pro')) return;
    const acct = await this.deps.accounts.get(tenantId);
    if (!acct || acct.planId !== 'payg' || !acct.overageOptIn) return;
    await this.deps.accounts.put({ ...acct, planId: 'pro', overageOptIn: false, status: 'active', updatedAt: now });
  }

  /**
   * Reports a finalized month's lines to Stripe as invoice items, each once: a line already reported (this
   * run, an earlier one, another process) is skipped; a crash between the call and the record is covered by the
   * line's Idempotency-Key.
   */
  async reportToStripe(tenantId: string, month: string, now: number): Promise<{ sent: number; skipped: number; invoice: Invoice }> {
    const stripe = this.deps.stripe;
    if (!stripe) throw new BillingError('FORGE_ERR_BILLING_CONFIG', 'Stripe is not configured', { field: 'stripe' });
    const inv = await this.finalize(tenantId, month, now);
    let sent = 0;
    let skipped = 0;
    for (const line of inv.lines) {
      if (line.amountMicros === 0) continue;
      const reportKey = `invoice-${tenantId}-${month}-${line.id}`;
      if (await this.deps.store.reported(tenantId, reportKey)) {
        skipped++;
        continue;
      }
      const item = await stripe.invoiceItem({ tenantId, reportKey, amountMicros: line.amountMicros, description: `${month}: ${line.description}`, metadata: { month, line_id: line.id, kind: line.kind } });
      await this.deps.store.markReported(tenantId, reportKey, item.id, line.amountMicros, now);
      sent++;
    }
    return { sent, skipped, invoice: inv };
  }

  /**
   * Credits a paid Checkout Session for a prepaid offer once (entries keyed by the session id): the amount
   * paid, and the offer's bonus. The session must carry metadata forge_tenant_id and forge_offer, and its
   * amount must be the offer's price in USD.
   */
  async creditCheckout(session: Stripe.Checkout.Session, now: number): Promise<{ tenantId: string; creditedMicros: number; replay: boolean } | { notPaid: true }> {
    if (session.payment_status !== 'paid') return { notPaid: true };
    const tenantId = session.metadata?.forge_tenant_id;
    const offerId = session.metadata?.forge_offer;
    if (!tenantId || !/^[A-Za-z0-9._-]{1,64}$/.test(tenantId)) throw new BillingError('FORGE_ERR_STRIPE_WEBHOOK_PAYLOAD', 'checkout session without a valid metadata.forge_tenant_id', { field: 'data.object.metadata.forge_tenant_id' });
    const offer = offerId ? this.deps.pricing.prepaidOffers[offerId] : undefined;
    if (!offer) throw new BillingError('FORGE_ERR_STRIPE_WEBHOOK_PAYLOAD', `unknown prepaid offer ${JSON.stringify(offerId ?? null)}`, { field: 'data.object.metadata.forge_offer' });
    if (session.currency !== 'usd' || session.amount_total === null || session.amount_total * 10_000 !== offer.payMicros) {
      throw new BillingError('FORGE_ERR_STRIPE_WEBHOOK_PAYLOAD', `the session's amount (${session.amount_total} ${session.currency}) is not the price of offer ${offer.id}`, { field: 'data.object.amount_total' });
    }
    const p = await this.deps.store.prepaid(tenantId, `checkout:${session.id}`, 'purchase', offer.payMicros, now, session.id);
    const bonus = offer.creditMicros - offer.payMicros;
    const b = bonus > 0 ? await this.deps.store.prepaid(tenantId, `checkout:${session.id}:bonus`, 'bonus', bonus, now, session.id) : { replay: true };
    return { tenantId, creditedMicros: (p.replay ? 0 : offer.payMicros) + (b.replay ? 0 : Math.max(0, bonus)), replay: p.replay && b.replay };
  }

  /** What each creator earned in a month from the finalized invoices of these tenants. */
  async creatorStatements(month: string, tenantIds: readonly string[]): Promise<CreatorStatement[]> {
    const by = new Map<string, CreatorStatement>();
    for (const t of tenantIds) {
      const inv = await this.deps.store.invoice(t, month);
      for (const e of inv?.creatorEarnings ?? []) {
        const s = by.get(e.creator) ?? { creator: e.creator, month, earnedMicros: 0, lines: [] };
        s.earnedMicros += e.creatorMicros;
        s.lines.push({ tenantId: t, skill: e.skill, mode: e.mode, executions: e.executions, revenueMicros: e.revenueMicros, creatorMicros: e.creatorMicros });
        by.set(e.creator, s);
      }
    }
    return [...by.values()].sort((a, b) => (a.creator < b.creator ? -1 : 1));
  }

  /**
   * Pays each creator's balance for a month (earned + carried in) through a Stripe Connect transfer when it
   * reaches the minimum, in whole cents; a smaller balance (and any fraction of a cent) carries to the next
   * month. A month already settled for a creator is never paid again.
   */
  async payCreators(month: string, tenantIds: readonly string[], now: number): Promise<PayoutRow[]> {
    const { to } = monthBounds(month);
    if (now < to) throw new BillingError('FORGE_ERR_BILLING_CONFLICT', `${month} is still open`, { field: 'month' });
    const stripe = this.deps.stripe;
    const out: PayoutRow[] = [];
    for (const s of await this.creatorStatements(month, tenantIds)) {
      const history = await this.deps.store.payouts(s.creator);
      const done = history.find((p) => p.month === month);
      if (done) {
        out.push(done);
        continue;
      }
      const carriedIn = history.filter((p) => p.month < month).at(-1)?.carryOutMicros ?? 0;
      const d = payoutDecision(carriedIn, s.earnedMicros, this.deps.pricing.payoutMinimumMicros);
      const payMicros = d.payMicros - (d.payMicros % 10_000);
      let transferId = '';
      if (payMicros > 0) {
        if (!stripe) throw new BillingError('FORGE_ERR_BILLING_CONFIG', 'Stripe is not configured', { field: 'stripe' });
        transferId = (await stripe.transfer({ destination: s.creator, amountMicros: payMicros, payoutId: `payout-${s.creator}-${month}`, group: `forge-payouts-${month}`, metadata: { creator: s.creator, month } })).id;
      }
      const row: PayoutRow = { creator: s.creator, month, earnedMicros: s.earnedMicros, carriedInMicros: carriedIn, paidMicros: payMicros, carryOutMicros: d.balanceMicros - payMicros, transferId, at: now };
      await this.deps.store.savePayout(row);
      out.push(row);
    }
    return out;
  }
}

function appliedEntry(month: string): string {
  return `invoice:${month}`;
}
