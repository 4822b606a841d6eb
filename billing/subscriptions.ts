import type { PlanId } from './plans.ts';

/** Payment state of a team's subscription, as Stripe reports it. */
export type SubscriptionStatus = 'none' | 'active' | 'trialing' | 'past_due' | 'unpaid' | 'canceled' | 'incomplete' | 'incomplete_expired' | 'paused';

/** A team's billing account. */
export interface BillingAccount {
  tenantId: string;
  planId: PlanId;
  byok: boolean;
  seats: number;
  status: SubscriptionStatus;
  overageOptIn: boolean;
  customerId: string | null;
  subscriptionId: string | null;
  /** `created` (epoch s) of the last Stripe event applied: older events are ignored. */
  lastStripeEventAt: number;
  updatedAt: number;
}

export function newAccount(tenantId: string, now: number): BillingAccount {
  return {
    tenantId,
    planId: 'free',
    byok: false,
    seats: 1,
    status: 'none',
    overageOptIn: false,
    customerId: null,
    subscriptionId: null,
    lastStripeEventAt: 0,
    updatedAt: now,
  };
}

/**
 * The plan limits apply from: the subscribed plan while it is paid for (active, trialing) or in the payment
 * grace of past_due; Free once the subscription is unpaid, canceled, paused or never completed.
 */
export function effectivePlanId(a: BillingAccount): PlanId {
  if (a.planId === 'free') return 'free';
  return a.status === 'active' || a.status === 'trialing' || a.status === 'past_due' ? a.planId : 'free';
}

export interface AccountStore {
  get(tenantId: string): Promise<BillingAccount | undefined>;
  byCustomer(customerId: string): Promise<BillingAccount | undefined>;
  put(a: BillingAccount): Promise<void>;
  list(): Promise<BillingAccount[]>;
  /** Was this webhook event id applied before? */
  hasEvent(eventId: string): Promise<boolean>;
  /** Records an applied webhook event id (after the change is stored, so a failed apply is retried by Stripe). */
  markEvent(eventId: string): Promise<void>;
}

export class MemoryAccountStore implements AccountStore {
  private readonly accounts = new Map<string, BillingAccount>();
  private readonly events = new Set<string>();

  async get(tenantId: string): Promise<BillingAccount | undefined> {
    const a = this.accounts.get(tenantId);
    return a ? { ...a } : undefined;
  }
  async byCustomer(customerId: string): Promise<BillingAccount | undefined> {
    for (const a of this.accounts.values()) if (a.customerId === customerId) return { ...a };
    return undefined;
  }
  async put(a: BillingAccount): Promise<void> {
    this.accounts.set(a.tenantId, { ...a });
  }
  async list(): Promise<BillingAccount[]> {
    return [...this.accounts.values()].map((a) => ({ ...a }));
  }
  async hasEvent(eventId: string): Promise<boolean> {
    return this.events.has(eventId);
  }
  async markEvent(eventId: string): Promise<void> {
    this.events.add(eventId);
  }
}
