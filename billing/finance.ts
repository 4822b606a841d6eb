import { Dec, type Micros } from '../rules/index.ts';
import { PLAN_IDS, subscriptionPriceMicros, type BillingCatalog, type PlanId } from './plans.ts';
import { effectivePlanId, type BillingAccount } from './subscriptions.ts';
import type { UsageSource } from './metering.ts';

export interface MarginRow {
  planId: PlanId;
  tenants: number;
  seats: number;
  /** Subscription revenue for the period, USD micros (custom-priced tenants count 0, see customPriced). */
  revenueMicros: Micros;
  /** LLM cost from the event log for the period, USD micros. */
  llmCostMicros: Micros;
  marginMicros: Micros;
  /** margin / revenue as a decimal string with 4 places; null when revenue is 0. */
  marginRatio: string | null;
  /** Tenants on a custom (Enterprise) price, whose revenue is not in the config. */
  customPriced: number;
}

export interface MarginReport {
  from: number;
  to: number;
  rows: MarginRow[];
  total: Omit<MarginRow, 'planId'>;
}

/**
 * Margin per tier (pure): plan price (standard or BYOK, per seat) vs LLM cost from the event log, for one
 * monthly period. Accounts count under the plan they are billed on (effective plan: canceled / unpaid -> Free).
 */
export function marginReport(
  catalog: BillingCatalog,
  accounts: readonly BillingAccount[],
  llmByTenant: ReadonlyMap<string, Micros>,
  period: { from: number; to: number },
): MarginReport {
  const rows = new Map<PlanId, MarginRow>(
    PLAN_IDS.map((id) => [id, { planId: id, tenants: 0, seats: 0, revenueMicros: 0, llmCostMicros: 0, marginMicros: 0, marginRatio: null, customPriced: 0 }]),
  );
  for (const a of accounts) {
    const planId = effectivePlanId(a);
    const plan = catalog.plans[planId];
    const row = rows.get(planId) as MarginRow;
    row.tenants += 1;
    row.seats += plan.perSeat ? Math.max(1, a.seats) : 1;
    const price = subscriptionPriceMicros(plan, { byok: a.byok, seats: a.seats });
    if (price === null) row.customPriced += 1;
    else row.revenueMicros += price;
    row.llmCostMicros += llmByTenant.get(a.tenantId) ?? 0;
  }
  const total = { tenants: 0, seats: 0, revenueMicros: 0, llmCostMicros: 0, marginMicros: 0, marginRatio: null as string | null, customPriced: 0 };
  for (const r of rows.values()) {
    r.marginMicros = r.revenueMicros - r.llmCostMicros;
    r.marginRatio = ratio(r.marginMicros, r.revenueMicros);
    total.tenants += r.tenants;
    total.seats += r.seats;
    total.revenueMicros += r.revenueMicros;
    total.llmCostMicros += r.llmCostMicros;
    total.customPriced += r.customPriced;
  }
  total.marginMicros = total.revenueMicros - total.llmCostMicros;
  total.marginRatio = ratio(total.marginMicros, total.revenueMicros);
  return { from: period.from, to: period.to, rows: [...rows.values()], total };
}

function ratio(margin: Micros, revenue: Micros): string | null {
  return revenue === 0 ? null : new Dec(margin).dividedBy(revenue).toFixed(4);
}

/** The finance report over the event log: LLM cost per tenant in [from, to) and the accounts' plans. */
export async function financeReport(
  catalog: BillingCatalog,
  accounts: readonly BillingAccount[],
  usage: UsageSource,
  period: { from: number; to: number },
): Promise<MarginReport> {
  const llm = await usage.llmMicrosByTenant(
    accounts.map((a) => a.tenantId),
    period.from,
    period.to,
  );
  return marginReport(catalog, accounts, llm, period);
}
