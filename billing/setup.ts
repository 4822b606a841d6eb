import { FastFailConnection } from '../guard/index.ts';
import { ClickHouseAccountStore, ClickHouseVaultStore } from './clickhouse-stores.ts';
import { loadBillingConfig, type BillingConfig } from './config.ts';
import { ClickHouseCreditEntryStore, migrateBilling, type BillingClickHouse } from './credits/clickhouse-store.ts';
import type { LedgerEntry } from './credits/entries.ts';
import { CreditLedger, type CreditLedgerApi } from './credits/ledger.ts';
import { RedisCreditLedger } from './credits/redis-ledger.ts';
import { BillingHaltGate, type HaltSource } from './halt-gate.ts';
import { ClickHouseUsageJournal } from './journal.ts';
import { ClickHouseKeyHealthStore, type KeyHealthStore } from './key-health.ts';
import { UsageBilling } from './usage-billing.ts';
import { loadUsagePricing } from './usage-pricing.ts';
import { UsageBillingStore } from './usage-stores.ts';
import { ClickHouseUsageSource, type UsageSource } from './metering.ts';
import { loadPlans, type BillingCatalog } from './plans.ts';
import { BillingService } from './service.ts';
import { StripeBilling } from './stripe.ts';
import type { AccountStore } from './subscriptions.ts';
import { UsageReporter } from './usage-reporter.ts';
import type { MasterKeys } from './vault/cipher.ts';
import { KeyVault } from './vault/vault.ts';

/** Everything the billing routes and `forge start` need, built once from the environment. */
export interface BillingParts {
  config: BillingConfig;
  catalog: BillingCatalog;
  service: BillingService;
  accounts: AccountStore;
  ledger: CreditLedgerApi;
  /** The credit ledger's entries of one owner, in append order (auditors, finance). */
  entries: (owner: string) => Promise<LedgerEntry[]>;
  usage: UsageSource;
  /** null without FORGE_VAULT_MASTER_KEY: BYOK is off and its routes answer FORGE_ERR_BYOK_NOT_CONFIGURED. */
  vault: KeyVault | null;
  /** The configured master keys (active + previous): what a rotation re-seals under. */
  vaultKeys: MasterKeys | null;
  /** null without STRIPE_SECRET_KEY / STRIPE_WEBHOOK_SECRET: subscriptions, webhooks and usage reports are off. */
  stripe: StripeBilling | null;
  reporter: UsageReporter | null;
  /** Invoices, prepaid dollars, commitments, creator payouts over the cost log. */
  usageBilling: UsageBilling;
  /** BYOK key health reported at settle. */
  keyHealth: KeyHealthStore;
  gate: BillingHaltGate | null;
  /** Starts the halt subscriber and (with Stripe) the usage reporter loop. Idempotent. */
  start(opts?: { reportIntervalMs?: number; clock?: () => number }): void;
  /** Stops the loops and closes what billing opened (not the store, not the bus). */
  close(): Promise<void>;
}

export interface BillingFromConfigOptions {
  env?: Record<string, string | undefined>;
  /** Billing's configuration as the process parsed it at start; absent: parsed here from `env`. */
  config?: BillingConfig;
  /** The opened store: billing keeps its tables next to the event log and meters from `cost_events`. */
  store: { client: BillingClickHouse; database: string; cluster?: string | undefined };
  /** The halt bus: holds and job starts are refused for halted scopes. */
  bus?: HaltSource;
  onError: (err: unknown, where: string) => void;
  /** fetch for the BYOK provider test calls (default: global fetch). */
  fetch?: typeof fetch;
}

/**
 * Builds billing from the environment and the opened store. FORGE_PLANS_FILE (default config/plans.yaml),
 * FORGE_BILLING_DATABASE (default: the store's database), FORGE_VAULT_MASTER_KEY(+_ID, FORGE_VAULT_PREVIOUS_KEYS),
 * FORGE_BYOK_{OPENAI,ANTHROPIC}_BASE_URL, STRIPE_SECRET_KEY + STRIPE_WEBHOOK_SECRET, FORGE_STRIPE_API_BASE_URL,
 * FORGE_STRIPE_METER_EVENT; FORGE_REDIS_URL / FORGE_REDIS_PREFIX put the credit ledger in Redis (several
 * processes). Without any of them billing runs on the embedded store with Stripe and BYOK off.
 */
export async function billingFromConfig(opts: BillingFromConfigOptions): Promise<BillingParts> {
  const env = opts.env ?? process.env;
  const config = opts.config ?? loadBillingConfig(env);
  const database = env.FORGE_BILLING_DATABASE ? config.database : opts.store.database;
  const catalog = loadPlans(config.plansFile);
  const client = opts.store.client;
  await migrateBilling(client, database, opts.store.cluster);

  const accounts = new ClickHouseAccountStore(client, database);
  const usage = new ClickHouseUsageSource(client, { table: `${opts.store.database}.cost_events`, userColumn: 'user_id', keySourceColumn: 'key_source' });
  const journal = new ClickHouseUsageJournal(client, database);
  const gate = opts.bus ? new BillingHaltGate(opts.bus, { onError: opts.onError }) : null;
  const guard = gate ? { guard: gate.holdGuard() } : {};

  let redis: FastFailConnection | null = null;
  let ledger: CreditLedgerApi;
  let entries: (owner: string) => Promise<LedgerEntry[]>;
  const redisUrl = env.FORGE_REDIS_URL;
  if (redisUrl) {
    const prefix = `${env.FORGE_REDIS_PREFIX || 'forge:'}credits:`;
    redis = new FastFailConnection(redisUrl, { commandTimeoutMs: 5000, name: 'forge-billing', onError: (e) => opts.onError(e, 'billing credit ledger (redis)') });
    const conn = redis.redis;
    const r = new RedisCreditLedger(conn, { prefix, ...guard });
    ledger = r;
    entries = (owner) => r.entries(owner);
  } else {
    const store = new ClickHouseCreditEntryStore(client, database);
    ledger = new CreditLedger(store, guard);
    entries = (owner) => store.load(owner);
  }

  let vault: KeyVault | null = null;
  if (config.vault) {
    vault = new KeyVault(config.vault.keys, new ClickHouseVaultStore(client, database), config.vault.providers, opts.fetch ? { fetch: opts.fetch } : {});
  }
  const stripe = config.stripe ? new StripeBilling(config.stripe, catalog, accounts) : null;

  // Producers need not attribute their events to users: per-user daily spend and the throttle clock come from
  // the journal of what billing settled and admitted (in the store: shared by every process, kept across restarts).
  const keyHealth = new ClickHouseKeyHealthStore(client, database);
  const pricing = loadUsagePricing(config.usagePricingFile);
  const service = new BillingService({ catalog, accounts, usage, ledger, journal, keyHealth, payAsYouGo: pricing.payAsYouGo, ...(gate ? { gate } : {}), ...(vault ? { vault } : {}), perUserFromLog: false });

  const usageBilling = new UsageBilling({ catalog, pricing, accounts, events: usage, store: new UsageBillingStore(client, database), stripe });
  // Daily meter events, and each closed month's invoice lines, reported to Stripe once.
  const reporter = stripe ? new UsageReporter({ stripe, accounts, usage, invoices: usageBilling, onError: opts.onError }) : null;

  let started = false;
  return {
    usageBilling,
    keyHealth,
    config,
    catalog,
    service,
    accounts,
    ledger,
    entries,
    usage,
    vault,
    vaultKeys: config.vault?.keys ?? null,
    stripe,
    reporter,
    gate,
    start(o = {}) {
      if (started) return;
      started = true;
      gate?.start();
      reporter?.start(o.reportIntervalMs ?? 3_600_000, o.clock ?? Date.now);
    },
    async close() {
      gate?.stop();
      await reporter?.stop();
      if (redis) {
        await redis.close();
      }
    },
  };
}
