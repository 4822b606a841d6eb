import Stripe from 'stripe';
import { BillingError } from './errors.ts';
import { getPlan, PLAN_IDS, type BillingCatalog, type PlanId } from './plans.ts';
import { newAccount, type AccountStore, type BillingAccount, type SubscriptionStatus } from './subscriptions.ts';

export interface StripeSettings {
  secretKey: string;
  webhookSecret: string;
  /** Stripe API base URL, default https://api.stripe.com (a loopback receiver in tests). */
  apiBaseUrl?: string;
  /** Retries stripe-node makes itself (same Idempotency-Key each time). Default 2. */
  maxNetworkRetries?: number;
  timeoutMs?: number;
  /** `event_name` of the Stripe meter counting executions. */
  meterEventName: string;
  /** Webhook timestamp tolerance, seconds (default 300). */
  webhookToleranceSec?: number;
}

/** Builds the stripe-node client; host, port and protocol come from apiBaseUrl. */
export function createStripeClient(s: StripeSettings): Stripe {
  let url: URL;
  try {
    url = new URL(s.apiBaseUrl ?? 'https://api.stripe.com');
  } catch {
    throw new BillingError('FORGE_ERR_BILLING_CONFIG', 'FORGE_STRIPE_API_BASE_URL is not a URL', { field: 'FORGE_STRIPE_API_BASE_URL' });
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new BillingError('FORGE_ERR_BILLING_CONFIG', 'FORGE_STRIPE_API_BASE_URL must be http(s)', { field: 'FORGE_STRIPE_API_BASE_URL' });
  }
  const protocol = url.protocol === 'http:' ? 'http' : 'https';
  return new Stripe(s.secretKey, {
    host: url.hostname,
    port: url.port === '' ? (protocol === 'http' ? 80 : 443) : Number(url.port),
    protocol,
    maxNetworkRetries: s.maxNetworkRetries ?? 2,
    timeout: s.timeoutMs ?? 20_000,
    telemetry: false,
  });
}

export type WebhookOutcome =
  | { handled: true; type: string; tenantId: string; planId: PlanId; status: SubscriptionStatus; previous: { planId: PlanId; status: SubscriptionStatus } }
  | { handled: true; type: 'checkout.session.completed'; tenantId: string; creditedMicros: number; replay: boolean }
  | { handled: false; type: string; reason: 'duplicate' | 'ignored_type' | 'unknown_customer' | 'stale' | 'not_paid' };

/** Credits a completed Checkout Session (prepaid dollars); installed by billing's usage part. */
export type CheckoutHandler = (session: Stripe.Checkout.Session, now: number) => Promise<{ tenantId: string; creditedMicros: number; replay: boolean } | { notPaid: true }>;

/** USD micros as Stripe's decimal cents (4 decimals at most: exact). */
export function microsToCentsDecimal(micros: number): string {
  const sign = micros < 0 ? '-' : '';
  const abs = Math.abs(micros);
  const whole = Math.floor(abs / 10_000);
  const frac = abs % 10_000;
  return frac === 0 ? `${sign}${whole}` : `${sign}${whole}.${String(frac).padStart(4, '0').replace(/0+$/, '')}`;
}

const IDEMP_RE = /^[A-Za-z0-9._:-]{1,200}$/;

/**
 * Stripe: customers, subscriptions per plan (standard or BYOK price), usage as meter events, and the signed
 * webhooks that move a team's plan and payment state. Every POST carries an Idempotency-Key derived from
 * the caller's stable ids, so a retry (stripe-node's own or a later one by the caller) never double-counts.
 */
export class StripeBilling {
  readonly stripe: Stripe;
  private checkoutHandler: CheckoutHandler | null = null;

  constructor(
    private readonly settings: StripeSettings,
    private readonly catalog: BillingCatalog,
    private readonly accounts: AccountStore,
    stripe?: Stripe,
  ) {
    this.stripe = stripe ?? createStripeClient(settings);
  }

  /** The team's Stripe customer, created once (idempotent by tenant id). */
  async ensureCustomer(input: { tenantId: string; email: string; name?: string; now: number }): Promise<BillingAccount> {
    const acct = (await this.accounts.get(input.tenantId)) ?? newAccount(input.tenantId, input.now);
    if (acct.customerId) return acct;
    if (!/^[^@\s]+@[^@\s]+$/.test(input.email)) throw new BillingError('FORGE_ERR_BILLING_INPUT', 'email is not an address', { field: 'email' });
    const c = await this.call('customers.create', () =>
      this.stripe.customers.create(
        { email: input.email, ...(input.name ? { name: input.name } : {}), metadata: { tenant_id: input.tenantId } },
        { idempotencyKey: key(`forge-customer-${input.tenantId}`) },
      ),
    );
    const next = { ...acct, customerId: c.id, updatedAt: input.now };
    await this.accounts.put(next);
    return next;
  }

  /**
   * Subscribes the team to a plan at its standard or BYOK price (per seat for Team). `requestId` names this
   * subscribe request (e.g. the api's request id); the same id retried sends the same Idempotency-Key.
   */
  async subscribe(input: { tenantId: string; planId: string; byok: boolean; seats?: number; requestId: string; now: number }): Promise<BillingAccount> {
    const plan = getPlan(this.catalog, input.planId);
    const acct = await this.accounts.get(input.tenantId);
    if (!acct?.customerId) throw new BillingError('FORGE_ERR_BILLING_INPUT', `tenant ${input.tenantId} has no Stripe customer yet`, { field: 'tenantId' });
    const price = input.byok ? plan.stripe.byokPriceId : plan.stripe.priceId;
    if (!price) {
      throw new BillingError('FORGE_ERR_BILLING_INPUT', `${plan.name} has no ${input.byok ? 'BYOK ' : ''}Stripe price (custom or free plan)`, { field: 'planId' });
    }
    const seats = plan.perSeat ? (input.seats ?? 1) : 1;
    if (!(Number.isSafeInteger(seats) && seats >= 1 && seats <= 10_000)) throw new BillingError('FORGE_ERR_BILLING_INPUT', 'seats must be 1..10000', { field: 'seats' });
    const metadata = { tenant_id: input.tenantId, plan_id: plan.id, byok: String(input.byok) };
    const live = acct.subscriptionId && acct.status !== 'canceled' && acct.status !== 'incomplete_expired' ? acct.subscriptionId : null;
    // A team already subscribed changes the price of its one subscription (BYOK switch, plan or seats):
    // creating a second subscription would bill it twice.
    const sub = live
      ? await this.changePrice(live, { price, quantity: seats, metadata, idempotencyKey: key(`forge-subscribe-${input.tenantId}-${input.requestId}`) })
      : await this.call('subscriptions.create', () =>
          this.stripe.subscriptions.create(
            { customer: acct.customerId as string, items: [{ price, quantity: seats }], metadata },
            { idempotencyKey: key(`forge-subscribe-${input.tenantId}-${input.requestId}`) },
          ),
        );
    const next: BillingAccount = {
      ...acct,
      planId: plan.id,
      byok: input.byok,
      seats,
      subscriptionId: sub.id,
      status: toStatus(sub.status),
      updatedAt: input.now,
    };
    await this.accounts.put(next);
    return next;
  }

  /**
   * Reports usage as one Stripe meter event. `usageId` is stable for this usage (e.g. the event id of the
   * execution, or tenant+month+batch): it becomes the meter event `identifier` and the Idempotency-Key, so
   * reporting it again (after a crash, a 500, a timeout) is counted once by Stripe.
   */
  async reportUsage(input: { tenantId: string; usageId: string; value: number; at: number; eventName?: string }): Promise<{ identifier: string }> {
    if (!(Number.isSafeInteger(input.value) && input.value > 0)) throw new BillingError('FORGE_ERR_BILLING_INPUT', 'value must be an integer > 0', { field: 'value' });
    const acct = await this.accounts.get(input.tenantId);
    if (!acct?.customerId) throw new BillingError('FORGE_ERR_BILLING_INPUT', `tenant ${input.tenantId} has no Stripe customer`, { field: 'tenantId' });
    const identifier = key(`forge-usage-${input.tenantId}-${input.usageId}`);
    await this.call('billing.meterEvents.create', () =>
      this.stripe.billing.meterEvents.create(
        {
          event_name: input.eventName ?? this.settings.meterEventName,
          payload: { stripe_customer_id: acct.customerId as string, value: String(input.value) },
          identifier,
          timestamp: Math.floor(input.at / 1000),
        },
        { idempotencyKey: identifier },
      ),
    );
    return { identifier };
  }

  /** Moves the subscription's one item to another price (prorated), keeping the subscription. */
  private async changePrice(subscriptionId: string, change: { price: string; quantity: number; metadata: Record<string, string>; idempotencyKey: string }): Promise<Stripe.Subscription> {
    const current = await this.call('subscriptions.retrieve', () => this.stripe.subscriptions.retrieve(subscriptionId));
    const item = current.items.data[0];
    if (!item) throw new BillingError('FORGE_ERR_STRIPE_API', `subscription ${subscriptionId} has no item`);
    return this.call('subscriptions.update', () =>
      this.stripe.subscriptions.update(
        subscriptionId,
        { items: [{ id: item.id, price: change.price, quantity: change.quantity }], proration_behavior: 'create_prorations', metadata: change.metadata },
        { idempotencyKey: change.idempotencyKey },
      ),
    );
  }

  /** Who credits `checkout.session.completed` (prepaid dollars); without one the event is ignored. */
  onCheckout(handler: CheckoutHandler): void {
    this.checkoutHandler = handler;
  }

  /**
   * One metered invoice line as a Stripe invoice item on the team's next invoice, to the micro-dollar
   * (`unit_amount_decimal` in cents, 4 decimals). `reportKey` names the line for good (tenant, month, line): it
   * is the Idempotency-Key, so a retry or a re-run reaches Stripe once.
   */
  async invoiceItem(input: { tenantId: string; reportKey: string; amountMicros: number; description: string; metadata: Record<string, string> }): Promise<{ id: string }> {
    const acct = await this.accounts.get(input.tenantId);
    if (!acct?.customerId) throw new BillingError('FORGE_ERR_BILLING_INPUT', `tenant ${input.tenantId} has no Stripe customer`, { field: 'tenantId' });
    const item = await this.call('invoiceItems.create', () =>
      this.stripe.invoiceItems.create(
        {
          customer: acct.customerId as string,
          currency: 'usd',
          quantity: 1,
          unit_amount_decimal: microsToCentsDecimal(input.amountMicros),
          description: input.description,
          metadata: { tenant_id: input.tenantId, amount_micros: String(input.amountMicros), ...input.metadata },
        },
        { idempotencyKey: key(`forge-${safeKey(input.reportKey)}`) },
      ),
    );
    return { id: item.id };
  }

  /** A Stripe Connect transfer to a creator's account, in whole cents; `payoutId` is its Idempotency-Key. */
  async transfer(input: { destination: string; amountMicros: number; payoutId: string; group: string; metadata: Record<string, string> }): Promise<{ id: string }> {
    if (!(Number.isSafeInteger(input.amountMicros) && input.amountMicros > 0 && input.amountMicros % 10_000 === 0)) {
      throw new BillingError('FORGE_ERR_BILLING_INPUT', 'a transfer is a positive number of whole cents', { field: 'amountMicros' });
    }
    const t = await this.call('transfers.create', () =>
      this.stripe.transfers.create(
        { amount: input.amountMicros / 10_000, currency: 'usd', destination: input.destination, transfer_group: safeKey(input.group), metadata: input.metadata },
        { idempotencyKey: key(`forge-${safeKey(input.payoutId)}`) },
      ),
    );
    return { id: t.id };
  }

  /**
   * Verifies a webhook with Stripe's own signature check (raw body, `Stripe-Signature` header) and applies it:
   * payment succeeded -> active; payment failed -> past_due; subscription updated -> plan, seats, BYOK, status.
   * A forged or stale signature throws FORGE_ERR_STRIPE_WEBHOOK_SIGNATURE (answer 400, change nothing).
   */
  async handleWebhook(rawBody: string | Buffer, signature: string | undefined, now: number): Promise<WebhookOutcome> {
    let event: Stripe.Event;
    try {
      if (!signature) throw new Error('missing Stripe-Signature header');
      event = this.stripe.webhooks.constructEvent(rawBody, signature, this.settings.webhookSecret, this.settings.webhookToleranceSec ?? 300, undefined, now);
    } catch (err) {
      throw new BillingError('FORGE_ERR_STRIPE_WEBHOOK_SIGNATURE', err instanceof Error ? err.message.split('\n')[0] ?? '' : 'invalid', {
        field: 'stripe-signature',
      });
    }
    const type = event.type;
    if (type === 'checkout.session.completed' && this.checkoutHandler) {
      if (await this.accounts.hasEvent(event.id)) return { handled: false, type, reason: 'duplicate' };
      const r = await this.checkoutHandler(event.data.object, now);
      await this.accounts.markEvent(event.id);
      if ('notPaid' in r) return { handled: false, type, reason: 'not_paid' };
      return { handled: true, type, tenantId: r.tenantId, creditedMicros: r.creditedMicros, replay: r.replay };
    }
    if (type !== 'invoice.payment_succeeded' && type !== 'invoice.payment_failed' && type !== 'customer.subscription.updated') {
      return { handled: false, type, reason: 'ignored_type' };
    }
    const obj = event.data.object as unknown as { customer?: unknown };
    const customerId = typeof obj.customer === 'string' ? obj.customer : (obj.customer as { id?: string } | null | undefined)?.id;
    if (!customerId) throw new BillingError('FORGE_ERR_STRIPE_WEBHOOK_PAYLOAD', `${type} without customer`, { field: 'data.object.customer' });
    const acct = await this.accounts.byCustomer(customerId);
    if (!acct) return { handled: false, type, reason: 'unknown_customer' };
    if (await this.accounts.hasEvent(event.id)) return { handled: false, type, reason: 'duplicate' };
    if (event.created < acct.lastStripeEventAt) {
      await this.accounts.markEvent(event.id);
      return { handled: false, type, reason: 'stale' };
    }

    const previous = { planId: acct.planId, status: acct.status };
    const next: BillingAccount = { ...acct, lastStripeEventAt: event.created, updatedAt: now };
    if (type === 'invoice.payment_succeeded') {
      next.status = 'active';
    } else if (type === 'invoice.payment_failed') {
      next.status = 'past_due';
    } else {
      const sub = event.data.object as Stripe.Subscription;
      const item = sub.items?.data?.[0];
      const priceId = item?.price?.id;
      const found = priceId ? this.planForPrice(priceId) : undefined;
      if (priceId && !found) throw new BillingError('FORGE_ERR_STRIPE_WEBHOOK_PAYLOAD', `price ${priceId} is not in config/plans.yaml`, { field: 'data.object.items' });
      if (found) {
        next.planId = found.planId;
        next.byok = found.byok;
      }
      next.seats = item?.quantity ?? next.seats;
      next.status = toStatus(sub.status);
      next.subscriptionId = sub.id;
    }
    await this.accounts.put(next);
    await this.accounts.markEvent(event.id);
    return { handled: true, type, tenantId: next.tenantId, planId: next.planId, status: next.status, previous };
  }

  private planForPrice(priceId: string): { planId: PlanId; byok: boolean } | undefined {
    for (const id of PLAN_IDS) {
      const p = this.catalog.plans[id];
      if (p.stripe.priceId === priceId) return { planId: id, byok: false };
      if (p.stripe.byokPriceId === priceId) return { planId: id, byok: true };
    }
    return undefined;
  }

  private async call<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof BillingError) throw err;
      const e = err as { type?: string; statusCode?: number; message?: string };
      throw new BillingError('FORGE_ERR_STRIPE_API', `${what}: ${e.type ?? 'error'} ${e.statusCode ?? ''}`.trim(), { cause: err });
    }
  }
}

/** An id made fit for an idempotency key: characters outside [A-Za-z0-9._:-] become '_'. */
function safeKey(k: string): string {
  return k.replace(/[^A-Za-z0-9._:-]/g, '_');
}

function key(k: string): string {
  if (!IDEMP_RE.test(k)) throw new BillingError('FORGE_ERR_BILLING_INPUT', `ids must match ${IDEMP_RE.source}`, { field: 'usageId' });
  return k;
}

function toStatus(s: string): SubscriptionStatus {
  const known: SubscriptionStatus[] = ['active', 'trialing', 'past_due', 'unpaid', 'canceled', 'incomplete', 'incomplete_expired', 'paused'];
  return (known as string[]).includes(s) ? (s as SubscriptionStatus) : 'incomplete';
}
