import { COMPONENTS, componentSpec, Dec, microsToUsd, type Component } from '../rules/index.ts';
import { eventComponents, type CostEvent } from './cost-event.ts';

/**
 * The cost log as a FOCUS 1.3 Cost and Usage dataset (FinOps Open Cost and Usage Specification): one row per
 * (event, cost component) with a non-zero amount, so the rows' BilledCost sums to the log's total to the
 * micro-dollar. Forge applies no discounts: BilledCost = EffectiveCost = ListCost = ContractedCost. The
 * charge period is the UTC hour the task finalized in; the billing period its UTC month. Forge's own
 * dimensions ride in x_ columns (the specification's rule for custom columns).
 */
export const FOCUS_COLUMNS = [
  'AvailabilityZone',
  'BilledCost',
  'BillingAccountId',
  'BillingAccountName',
  'BillingAccountType',
  'BillingCurrency',
  'BillingPeriodEnd',
  'BillingPeriodStart',
  'CapacityReservationId',
  'CapacityReservationStatus',
  'ChargeCategory',
  'ChargeClass',
  'ChargeDescription',
  'ChargeFrequency',
  'ChargePeriodEnd',
  'ChargePeriodStart',
  'CommitmentDiscountCategory',
  'CommitmentDiscountId',
  'CommitmentDiscountName',
  'CommitmentDiscountQuantity',
  'CommitmentDiscountStatus',
  'CommitmentDiscountType',
  'CommitmentDiscountUnit',
  'ConsumedQuantity',
  'ConsumedUnit',
  'ContractedCost',
  'ContractedUnitPrice',
  'EffectiveCost',
  'HostProviderName',
  'InvoiceId',
  'InvoiceIssuerName',
  'ListCost',
  'ListUnitPrice',
  'PricingCategory',
  'PricingCurrency',
  'PricingQuantity',
  'PricingUnit',
  'ProviderName',
  'PublisherName',
  'RegionId',
  'RegionName',
  'ResourceId',
  'ResourceName',
  'ResourceType',
  'ServiceCategory',
  'ServiceName',
  'ServiceProviderName',
  'ServiceSubcategory',
  'SkuId',
  'SkuMeter',
  'SkuPriceDetails',
  'SkuPriceId',
  'SubAccountId',
  'SubAccountName',
  'SubAccountType',
  'Tags',
  'x_TenantId',
  'x_RunId',
  'x_TaskId',
  'x_AgentId',
  'x_CostComponent',
  'x_EventId',
] as const;

export type FocusRow = Record<(typeof FOCUS_COLUMNS)[number], string | null>;

const HOUR_MS = 3_600_000;
const PROVIDER = 'Forge';

function iso(ms: number): string {
  return new Date(ms).toISOString().replace('.000Z', 'Z');
}

/** The quantity a component's amount was priced from, in its FOCUS unit (null where the log cannot say exactly). */
function quantityOf(c: Component, e: CostEvent): string | null {
  switch (c) {
    case 'rli':
      return '1';
    case 'gas':
      return e.gasUsed;
    case 'compute':
      return e.taskHours || null;
    case 'storage': {
      // The task's share of the day's storage, in GB-months: amount / USD per GB-month.
      const price = new Dec(e.storageGbMonthUsd || '0');
      return price.isZero() ? null : new Dec(e.storageMicros).dividedBy(1e6).dividedBy(price).toDecimalPlaces(12).toFixed();
    }
    case 'llm':
      return String(e.llmTokens.reduce((s, t) => s + t.inputTokens + t.outputTokens, 0));
    default:
      return e.metered?.[c] ?? null;
  }
}

/** FOCUS rows of cost events. */
export function focusRows(events: readonly CostEvent[]): FocusRow[] {
  const out: FocusRow[] = [];
  for (const e of events) {
    const amounts = eventComponents(e);
    const hour = Math.floor(e.eventTime / HOUR_MS) * HOUR_MS;
    const d = new Date(e.eventTime);
    const monthStart = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
    const monthEnd = Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
    for (const c of COMPONENTS) {
      const micros = amounts[c];
      if (micros === 0) continue;
      const spec = componentSpec(c);
      const usd = microsToUsd(micros);
      const q = quantityOf(c, e);
      out.push({
        AvailabilityZone: null,
        BilledCost: usd,
        BillingAccountId: e.tenantId,
        BillingAccountName: e.tenantId,
        BillingAccountType: 'Tenant',
        BillingCurrency: 'USD',
        BillingPeriodEnd: iso(monthEnd),
        BillingPeriodStart: iso(monthStart),
        CapacityReservationId: null,
        CapacityReservationStatus: null,
        ChargeCategory: 'Usage',
        ChargeClass: null,
        ChargeDescription: `${spec.what} of task ${e.taskId} (run ${e.runId})`,
        ChargeFrequency: 'Usage-Based',
        ChargePeriodEnd: iso(hour + HOUR_MS),
        ChargePeriodStart: iso(hour),
        CommitmentDiscountCategory: null,
        CommitmentDiscountId: null,
        CommitmentDiscountName: null,
        CommitmentDiscountQuantity: null,
        CommitmentDiscountStatus: null,
        CommitmentDiscountType: null,
        CommitmentDiscountUnit: null,
        ConsumedQuantity: q,
        ConsumedUnit: q === null ? null : spec.focus.unit,
        ContractedCost: usd,
        ContractedUnitPrice: null,
        EffectiveCost: usd,
        HostProviderName: PROVIDER,
        InvoiceId: null,
        InvoiceIssuerName: PROVIDER,
        ListCost: usd,
        ListUnitPrice: null,
        PricingCategory: 'Standard',
        PricingCurrency: 'USD',
        PricingQuantity: q,
        PricingUnit: q === null ? null : spec.focus.unit,
        ProviderName: PROVIDER,
        PublisherName: PROVIDER,
        RegionId: null,
        RegionName: null,
        ResourceId: `${e.tenantId}/${e.runId}/${e.taskId}`,
        ResourceName: e.taskId,
        ResourceType: 'Task',
        ServiceCategory: spec.focus.category,
        ServiceName: spec.focus.serviceName,
        ServiceProviderName: PROVIDER,
        ServiceSubcategory: null,
        SkuId: `forge-${c}`,
        SkuMeter: spec.label,
        SkuPriceDetails: null,
        SkuPriceId: null,
        SubAccountId: e.runId,
        SubAccountName: e.runId,
        SubAccountType: 'Run',
        Tags: JSON.stringify({ 'forge.task_type': e.taskType, 'forge.model': e.model, 'forge.environment': e.environment, 'forge.status': e.status }),
        x_TenantId: e.tenantId,
        x_RunId: e.runId,
        x_TaskId: e.taskId,
        x_AgentId: null,
        x_CostComponent: c,
        x_EventId: e.eventId,
      });
    }
  }
  return out;
}

const csvCell = (v: string | null): string => {
  if (v === null) return '';
  // Quote when needed, and defuse spreadsheet formulas (a leading = + - @ that is not a number).
  const safe = /^[=+\-@]/.test(v) && !/^-?\d/.test(v) ? `'${v}` : v;
  return /[",\n\r]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
};

/** RFC 4180 CSV with the header row; an empty cell is a FOCUS null. */
export function focusCsv(rows: readonly FocusRow[]): string {
  const lines = [FOCUS_COLUMNS.join(',')];
  for (const r of rows) lines.push(FOCUS_COLUMNS.map((c) => csvCell(r[c])).join(','));
  return `${lines.join('\r\n')}\r\n`;
}
