import type { Micros } from '../rules/index.ts';
import { checkDb, type BillingClickHouse } from './credits/clickhouse-store.ts';
import { BillingError } from './errors.ts';

/** One settled execution: whose, when (its start), its LLM spend and whether the user's own key paid. */
export interface SettledExecution {
  tenantId: string;
  executionId: string;
  userId: string;
  at: number;
  llmMicros: Micros;
  byok: boolean;
}

/**
 * What billing admitted and settled, in shared state: the throttle's clock (the latest admission of a team)
 * and a user's platform-key spend per day come from here, so a restart or a second API process sees the same
 * numbers. Writing the same execution twice counts it once.
 */
export interface UsageJournal {
  admitted(e: { tenantId: string; executionId: string; userId: string; at: number }): Promise<void>;
  settled(e: SettledExecution): Promise<void>;
  /** The latest admission of a team in [from, to), epoch ms; null when none. */
  lastAdmittedAt(tenantId: string, from: number, to: number): Promise<number | null>;
  /** A user's settled platform-key LLM spend of executions started in [from, to), USD micros. */
  platformSpend(tenantId: string, userId: string, from: number, to: number): Promise<Micros>;
}

/** In-process journal: tests, and one process without a store. */
export class MemoryUsageJournal implements UsageJournal {
  private readonly admits = new Map<string, { tenantId: string; at: number }>();
  private readonly settles = new Map<string, SettledExecution>();

  async admitted(e: { tenantId: string; executionId: string; at: number }): Promise<void> {
    this.admits.set(`${e.tenantId}\u0000${e.executionId}`, { tenantId: e.tenantId, at: e.at });
  }

  async settled(e: SettledExecution): Promise<void> {
    this.settles.set(`${e.tenantId}\u0000${e.executionId}`, { ...e });
  }

  async lastAdmittedAt(tenantId: string, from: number, to: number): Promise<number | null> {
    let last: number | null = null;
    for (const a of this.admits.values()) if (a.tenantId === tenantId && a.at >= from && a.at < to) last = Math.max(last ?? a.at, a.at);
    return last;
  }

  async platformSpend(tenantId: string, userId: string, from: number, to: number): Promise<Micros> {
    let s = 0;
    for (const e of this.settles.values()) if (e.tenantId === tenantId && e.userId === userId && !e.byok && e.at >= from && e.at < to) s += e.llmMicros;
    return s;
  }
}

/** The journal in ClickHouse (`billing_usage_journal`, billing migration 0005). Every query has a tenant and a time bound. */
export class ClickHouseUsageJournal implements UsageJournal {
  private readonly table: string;

  constructor(
    private readonly client: BillingClickHouse,
    database: string,
  ) {
    this.table = `${checkDb(database)}.billing_usage_journal`;
  }

  private async insert(row: Record<string, unknown>): Promise<void> {
    try {
      await this.client.insert({ table: this.table, values: [row], format: 'JSONEachRow' });
    } catch (err) {
      throw new BillingError('FORGE_ERR_STORE_UNAVAILABLE', 'usage journal', { cause: err });
    }
  }

  private async one(query: string, params: Record<string, unknown>): Promise<string | undefined> {
    try {
      const rs = await this.client.query({ query, query_params: params, format: 'JSONEachRow' });
      return (await rs.json<{ v: string }>())[0]?.v;
    } catch (err) {
      throw new BillingError('FORGE_ERR_STORE_UNAVAILABLE', 'usage journal', { cause: err });
    }
  }

  async admitted(e: { tenantId: string; executionId: string; userId: string; at: number }): Promise<void> {
    await this.insert({ tenant_id: e.tenantId, kind: 'admit', execution_id: e.executionId, user_id: e.userId, at: e.at, llm_micros: 0, byok: false });
  }

  async settled(e: SettledExecution): Promise<void> {
    await this.insert({ tenant_id: e.tenantId, kind: 'settle', execution_id: e.executionId, user_id: e.userId, at: e.at, llm_micros: e.llmMicros, byok: e.byok });
  }

  async lastAdmittedAt(tenantId: string, from: number, to: number): Promise<number | null> {
    const v = await this.one(
      `SELECT toString(if(count() = 0, -1, toUnixTimestamp64Milli(max(at)))) AS v FROM ${this.table} FINAL
       WHERE tenant_id = {t:String} AND kind = 'admit' AND at >= fromUnixTimestamp64Milli({from:Int64}, 'UTC') AND at < fromUnixTimestamp64Milli({to:Int64}, 'UTC')`,
      { t: tenantId, from, to },
    );
    const n = Number(v ?? -1);
    return n < 0 ? null : n;
  }

  async platformSpend(tenantId: string, userId: string, from: number, to: number): Promise<Micros> {
    const v = await this.one(
      `SELECT toString(sum(llm_micros)) AS v FROM ${this.table} FINAL
       WHERE tenant_id = {t:String} AND kind = 'settle' AND user_id = {u:String} AND NOT byok
         AND at >= fromUnixTimestamp64Milli({from:Int64}, 'UTC') AND at < fromUnixTimestamp64Milli({to:Int64}, 'UTC')`,
      { t: tenantId, u: userId, from, to },
    );
    return Number(v ?? 0);
  }
}
