import type { ClickHouseClient } from '@clickhouse/client';
import { STORE_ERROR_CODES, StoreError } from './errors.ts';
import { checkTime } from './scope.ts';

const TENANT_ID = /^[A-Za-z0-9._-]{1,64}$/;

/** One tenant created through the API: who created it, why, when (epoch ms). */
export interface TenantRecord {
  tenantId: string;
  createdAt: number;
  actor: string;
  reason: string;
}

/**
 * The `tenants` table (migration 0004): tenants an admin created, append-only, shared by every API
 * process on the same store.
 */
export class TenantTable {
  readonly #client: ClickHouseClient;
  readonly #db: string;

  constructor(client: ClickHouseClient, database: string) {
    this.#client = client;
    this.#db = database;
  }

  async add(t: TenantRecord): Promise<void> {
    if (!TENANT_ID.test(t.tenantId)) throw new StoreError(STORE_ERROR_CODES.INVALID, `tenantId must match ${TENANT_ID.source}`, { field: 'tenantId' });
    await this.#client.insert({
      table: `${this.#db}.tenants`,
      values: [{ tenant_id: t.tenantId, created_at: checkTime(t.createdAt, 'createdAt'), actor: t.actor.slice(0, 512), reason: t.reason.slice(0, 1000) }],
      format: 'JSONEachRow',
    });
  }

  async list(): Promise<TenantRecord[]> {
    const rs = await this.#client.query({
      query: `SELECT tenant_id, toUnixTimestamp64Milli(created_at) AS at_ms, actor, reason FROM ${this.#db}.tenants FINAL ORDER BY tenant_id`,
      format: 'JSONEachRow',
    });
    return (await rs.json<{ tenant_id: string; at_ms: string | number; actor: string; reason: string }>()).map((r) => ({ tenantId: r.tenant_id, createdAt: Number(r.at_ms), actor: r.actor, reason: r.reason }));
  }
}
