import { BillingError } from './errors.ts';
import { checkDb, type BillingClickHouse } from './credits/clickhouse-store.ts';
import { isPlanId } from './plans.ts';
import type { AccountStore, BillingAccount, SubscriptionStatus } from './subscriptions.ts';
import type { ByokMode, VaultRecord, VaultStore } from './vault/vault.ts';

let lastVersion = 0;
/** Row versions for ReplacingMergeTree: microsecond-ish clock, strictly increasing within the process. */
function nextVersion(): number {
  lastVersion = Math.max(Date.now() * 1000, lastVersion + 1);
  return lastVersion;
}

async function rows<T>(client: BillingClickHouse, query: string, params: Record<string, unknown> = {}): Promise<T[]> {
  try {
    const rs = await client.query({ query, query_params: params, format: 'JSONEachRow' });
    return await rs.json<T>();
  } catch (err) {
    throw new BillingError('FORGE_ERR_STORE_UNAVAILABLE', 'billing tables', { cause: err });
  }
}

async function insert(client: BillingClickHouse, table: string, values: Record<string, unknown>[]): Promise<void> {
  try {
    await client.insert({ table, values, format: 'JSONEachRow' });
  } catch (err) {
    throw new BillingError('FORGE_ERR_STORE_UNAVAILABLE', `insert into ${table}`, { cause: err });
  }
}

interface AccountRow {
  tenant_id: string;
  plan_id: string;
  byok: boolean;
  seats: number;
  status: string;
  overage_opt_in: boolean;
  customer_id: string;
  subscription_id: string;
  last_stripe_event_at: string;
  updated_ms: string;
}

const ACCOUNT_COLS = `tenant_id, plan_id, byok, seats, status, overage_opt_in, customer_id, subscription_id,
  toString(last_stripe_event_at) AS last_stripe_event_at, toString(toUnixTimestamp64Milli(updated_at)) AS updated_ms`;

/** Billing accounts in ClickHouse (`billing_accounts`, latest version wins). Apply migrateBilling first. */
export class ClickHouseAccountStore implements AccountStore {
  private readonly db: string;

  constructor(
    private readonly client: BillingClickHouse,
    database: string,
  ) {
    this.db = checkDb(database);
  }

  async get(tenantId: string): Promise<BillingAccount | undefined> {
    const r = await rows<AccountRow>(this.client, `SELECT ${ACCOUNT_COLS} FROM ${this.db}.billing_accounts FINAL WHERE tenant_id = {t:String}`, { t: tenantId });
    return r[0] ? toAccount(r[0]) : undefined;
  }

  async byCustomer(customerId: string): Promise<BillingAccount | undefined> {
    const r = await rows<AccountRow>(
      this.client,
      `SELECT ${ACCOUNT_COLS} FROM ${this.db}.billing_accounts FINAL WHERE customer_id = {c:String} ORDER BY updated_at DESC LIMIT 1`,
      { c: customerId },
    );
    return r[0] ? toAccount(r[0]) : undefined;
  }

  async put(a: BillingAccount): Promise<void> {
    await insert(this.client, `${this.db}.billing_accounts`, [
      {
        tenant_id: a.tenantId,
        plan_id: a.planId,
        byok: a.byok,
        seats: a.seats,
        status: a.status,
        overage_opt_in: a.overageOptIn,
        customer_id: a.customerId ?? '',
        subscription_id: a.subscriptionId ?? '',
        last_stripe_event_at: a.lastStripeEventAt,
        updated_at: a.updatedAt,
        version: nextVersion(),
      },
    ]);
  }

  async list(): Promise<BillingAccount[]> {
    return (await rows<AccountRow>(this.client, `SELECT ${ACCOUNT_COLS} FROM ${this.db}.billing_accounts FINAL ORDER BY tenant_id`)).map(toAccount);
  }

  async hasEvent(eventId: string): Promise<boolean> {
    const r = await rows<{ n: string }>(this.client, `SELECT toString(count()) AS n FROM ${this.db}.stripe_webhook_events WHERE event_id = {e:String}`, { e: eventId });
    return Number(r[0]?.n ?? 0) > 0;
  }

  async markEvent(eventId: string): Promise<void> {
    await insert(this.client, `${this.db}.stripe_webhook_events`, [{ event_id: eventId }]);
  }
}

function toAccount(r: AccountRow): BillingAccount {
  return {
    tenantId: r.tenant_id,
    planId: isPlanId(r.plan_id) ? r.plan_id : 'free',
    byok: Boolean(r.byok),
    seats: Number(r.seats),
    status: r.status as SubscriptionStatus,
    overageOptIn: Boolean(r.overage_opt_in),
    customerId: r.customer_id === '' ? null : r.customer_id,
    subscriptionId: r.subscription_id === '' ? null : r.subscription_id,
    lastStripeEventAt: Number(r.last_stripe_event_at),
    updatedAt: Number(r.updated_ms),
  };
}

interface KeyRow {
  tenant_id: string;
  user_id: string;
  provider: string;
  agent_id: string;
  sealed: string;
  created_ms: string;
  updated_ms: string;
}

const KEY_COLS = `tenant_id, user_id, provider, agent_id, sealed,
  toString(toUnixTimestamp64Milli(created_at)) AS created_ms, toString(toUnixTimestamp64Milli(updated_at)) AS updated_ms`;

/** Sealed BYOK keys in ClickHouse (`byok_keys`, `byok_modes`). Only ciphertext is ever written. */
export class ClickHouseVaultStore implements VaultStore {
  private readonly db: string;

  constructor(
    private readonly client: BillingClickHouse,
    database: string,
  ) {
    this.db = checkDb(database);
  }

  async put(r: VaultRecord): Promise<void> {
    await this.write(r, false);
  }

  private async write(r: VaultRecord, deleted: boolean): Promise<void> {
    await insert(this.client, `${this.db}.byok_keys`, [
      {
        tenant_id: r.tenantId,
        user_id: r.userId,
        provider: r.provider,
        agent_id: r.agentId,
        sealed: deleted ? '' : r.sealed,
        created_at: r.createdAt,
        updated_at: r.updatedAt,
        deleted,
        version: nextVersion(),
      },
    ]);
  }

  async get(tenantId: string, userId: string, provider: string, agentId: string): Promise<VaultRecord | undefined> {
    const r = await rows<KeyRow>(
      this.client,
      `SELECT ${KEY_COLS} FROM ${this.db}.byok_keys FINAL
       WHERE tenant_id = {t:String} AND user_id = {u:String} AND provider = {p:String} AND agent_id = {a:String} AND NOT deleted`,
      { t: tenantId, u: userId, p: provider, a: agentId },
    );
    return r[0] ? toRecord(r[0]) : undefined;
  }

  async list(tenantId: string, userId: string): Promise<VaultRecord[]> {
    return (
      await rows<KeyRow>(
        this.client,
        `SELECT ${KEY_COLS} FROM ${this.db}.byok_keys FINAL WHERE tenant_id = {t:String} AND user_id = {u:String} AND NOT deleted ORDER BY provider, agent_id`,
        { t: tenantId, u: userId },
      )
    ).map(toRecord);
  }

  async delete(tenantId: string, userId: string, provider: string, agentId: string): Promise<boolean> {
    const r = await this.get(tenantId, userId, provider, agentId);
    if (!r) return false;
    await this.write({ ...r, updatedAt: Date.now() }, true);
    return true;
  }

  async all(): Promise<VaultRecord[]> {
    return (await rows<KeyRow>(this.client, `SELECT ${KEY_COLS} FROM ${this.db}.byok_keys FINAL WHERE NOT deleted`)).map(toRecord);
  }

  async getMode(tenantId: string, userId: string): Promise<ByokMode | undefined> {
    const r = await rows<{ mode: string }>(this.client, `SELECT mode FROM ${this.db}.byok_modes FINAL WHERE tenant_id = {t:String} AND user_id = {u:String}`, {
      t: tenantId,
      u: userId,
    });
    return r[0] ? (JSON.parse(r[0].mode) as ByokMode) : undefined;
  }

  async setMode(tenantId: string, userId: string, mode: ByokMode): Promise<void> {
    await insert(this.client, `${this.db}.byok_modes`, [{ tenant_id: tenantId, user_id: userId, mode: JSON.stringify(mode), version: nextVersion() }]);
  }
}

function toRecord(r: KeyRow): VaultRecord {
  return {
    tenantId: r.tenant_id,
    userId: r.user_id,
    provider: r.provider,
    agentId: r.agent_id,
    sealed: r.sealed,
    createdAt: Number(r.created_ms),
    updatedAt: Number(r.updated_ms),
  };
}
