/**
 * billing/: plans and limits, execution metering, cost guardrails, the prepaid credit ledger, the BYOK key
 * vault, model routing, Stripe, the halt seam and the finance report. The api's billing routes are a thin
 * shell over these.
 */
export { BillingError, BILLING_ERROR_CODES, type BillingErrorCode } from './errors.ts';
export {
  parsePlans,
  loadPlans,
  getPlan,
  isPlanId,
  subscriptionPriceMicros,
  PlansConfigError,
  MODEL_TIERS,
  PLAN_IDS,
  CHANNELS,
  type Plan,
  type PlanId,
  type ModelTier,
  type ModelInfo,
  type CreditPack,
  type BillingCatalog,
  type Channel,
} from './plans.ts';
export {
  checkExecutionLimit,
  checkSandboxTry,
  checkRunningAgents,
  checkDailySpend,
  checkTokens,
  checkModelAllowed,
  burnAlerts,
  monthStartUtc,
  nextMonthStartUtc,
  dayStartUtc,
  nextDayStartUtc,
  monthKey,
  type ExecutionUsage,
  type LimitDecision,
  type SimpleDecision,
  type BurnAlert,
  type BurnMetric,
} from './limits.ts';
export { routeModel, findModel, blendedPrice, type RoutingPreference, type RouteOutcome } from './routing.ts';
export { fallbackChain, FALLBACK_CLASSES, type FallbackStep, type FallbackClass } from './fallback.ts';
export {
  MemoryUsageSource,
  ClickHouseUsageSource,
  StoreUsageSource,
  type StoreTotalsReader,
  type UsageSource,
  type MeterQuery,
  type ExecutionCount,
  type MeteredExecution,
  type ClickHouseUsageOptions,
} from './metering.ts';
export {
  CreditLedger,
  creditsFor,
  assertBalanced,
  creditStatement,
  type HoldGuard,
  type HoldRequest,
  type HoldOutcome,
  type SettleOutcome,
  type Balance,
  type CreditLedgerApi,
} from './credits/ledger.ts';
export { MemoryUsageJournal, ClickHouseUsageJournal, type UsageJournal, type SettledExecution } from './journal.ts';
export { RedisCreditLedger } from './credits/redis-ledger.ts';
export { MemoryCreditEntryStore, ACCOUNTS, type CreditEntryStore, type LedgerEntry, type CreditUnit, type TxKind } from './credits/entries.ts';
export { ClickHouseCreditEntryStore, loadBillingMigrations, migrateBilling, renderBillingMigrations, type BillingClickHouse } from './credits/clickhouse-store.ts';
export { ClickHouseAccountStore, ClickHouseVaultStore } from './clickhouse-stores.ts';
export { KeyedSerial } from './serial.ts';
export { SecretString } from './vault/secret.ts';
export { seal, open, sealedKeyId, parseMasterKey, masterKeys, type MasterKeys } from './vault/cipher.ts';
export {
  KeyVault,
  MemoryVaultStore,
  type VaultStore,
  type VaultRecord,
  type VaultKeyView,
  type ByokMode,
  type ProviderEndpoint,
  type KeyRouting,
  byokModeOf,
} from './vault/vault.ts';
export { UsageReporter } from './usage-reporter.ts';
export { StripeBilling, createStripeClient, microsToCentsDecimal, type StripeSettings, type WebhookOutcome, type CheckoutHandler } from './stripe.ts';
export {
  MemoryAccountStore,
  newAccount,
  effectivePlanId,
  type AccountStore,
  type BillingAccount,
  type SubscriptionStatus,
} from './subscriptions.ts';
export { BillingHaltGate, type HaltSource, type GateDecision } from './halt-gate.ts';
export { marginReport, financeReport, type MarginReport, type MarginRow } from './finance.ts';
export { KEY_STATUSES, keyHealthAlert, ClickHouseKeyHealthStore, type KeyStatus, type KeyHealthReport, type KeyHealthAlert, type KeyHealthStore } from './key-health.ts';
export { BillingService, type SettleJobOutcome, type RouteAnswer, type StartJobInput, type StartJobOutcome, type SettleJobInput, type UsageSummary } from './service.ts';
export {
  parseUsagePricing,
  loadUsagePricing,
  priceAt,
  tokenAmounts,
  includedExecutions,
  overageCharge,
  paygCharge,
  paygUpgradeAdvice,
  proEquivalentMicros,
  commitmentTier,
  commitmentCharge,
  revenueSplit,
  payoutDecision,
  type UsagePricing,
  type PriceBookEntry,
  type PremiumSkill,
  type CommitmentTier,
} from './usage-pricing.ts';
export { buildInvoice, assertInvoiceAddsUp, invoiceCsv, invoiceHtml, type Invoice, type InvoiceLine, type InvoiceLineKind, type InvoiceDetail, type BillableEvent, type CreatorEarning } from './invoice.ts';
export { UsageBilling, monthBounds, addMonths, type BillableEventSource, type CreatorStatement } from './usage-billing.ts';
export { UsageBillingStore, type Commitment, type PayoutRow, type PrepaidKind } from './usage-stores.ts';
export { BILLING_ENV, billingConfigFrom, loadBillingConfig, type BillingConfig } from './config.ts';
export { billingFromConfig, type BillingParts, type BillingFromConfigOptions } from './setup.ts';
