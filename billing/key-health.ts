import { checkDb, type BillingClickHouse } from './credits/clickhouse-store.ts';
import { BillingError } from './errors.ts';

/** What a runner reports about a BYOK key at settle. */
export const KEY_STATUSES = ['ok', 'provider_error', 'rate_limited', 'expired', 'invalid'] as const;
export type KeyStatus = (typeof KEY_STATUSES)[number];

export interface KeyHealthReport {
  tenantId: string;
  userId: string;
  provider: string;
  /** '*' for the user's default key. */
  agentId: string;
  executionId: string;
  status: KeyStatus;
  detail: string;
  at: number;
}

/** An alert about a user's key: anything but `ok`. Expired and invalid keys must be replaced; the others may pass. */
export interface KeyHealthAlert {
  provider: string;
  agentId: string;
  status: Exclude<KeyStatus, 'ok'>;
  severity: 'warning' | 'action_required';
  message: string;
  dedupKey: string;
}

/** The alert a report raises (pure); null for `ok`. One dedup key per key, status and UTC day. */
export function keyHealthAlert(r: KeyHealthReport): KeyHealthAlert | null {
  if (r.status === 'ok') return null;
  const severity = r.status === 'expired' || r.status === 'invalid' ? 'action_required' : 'warning';
  const what = { provider_error: 'returned an error', rate_limited: 'rate-limited the call', expired: 'reports the key expired', invalid: 'rejected the key' }[r.status];
  return {
    provider: r.provider,
    agentId: r.agentId,
    status: r.status,
    severity,
    message: `${r.provider} ${what} for user ${r.userId}${r.agentId === '*' ? '' : ` (agent ${r.agentId})`}${severity === 'action_required' ? ': replace the key' : ''}`,
    dedupKey: `byok:${r.tenantId}:${r.userId}:${r.provider}:${r.agentId}:${r.status}:${new Date(r.at).toISOString().slice(0, 10)}`,
  };
}

export interface KeyHealthStore {
  record(r: KeyHealthReport): Promise<void>;
  /** A user's keys' latest reported state, per provider and agent. */
  latest(tenantId: string, userId: string): Promise<KeyHealthReport[]>;
}

/** Key health in ClickHouse (`byok_key_health`, billing migration 0009). */
export class ClickHouseKeyHealthStore implements KeyHealthStore {
  private readonly table: string;

  constructor(
    private readonly client: BillingClickHouse,
    database: string,
  ) {
    this.table = `${checkDb(database)}.byok_key_health`;
  }

  async record(r: KeyHealthReport): Promise<void> {
    try {
      await this.client.insert({
        table: this.table,
        values: [{ tenant_id: r.tenantId, user_id: r.userId, provider: r.provider, agent_id: r.agentId, execution_id: r.executionId, status: r.status, detail: r.detail, at: r.at }],
        format: 'JSONEachRow',
      });
    } catch (err) {
      throw new BillingError('FORGE_ERR_STORE_UNAVAILABLE', 'key health', { cause: err });
    }
  }

  async latest(tenantId: string, userId: string): Promise<KeyHealthReport[]> {
    try {
      const rs = await this.client.query({
        query: `SELECT provider, agent_id, argMax(execution_id, at) AS e, argMax(status, at) AS s, argMax(detail, at) AS d, toString(toUnixTimestamp64Milli(max(at))) AS at_ms
                FROM ${this.table} FINAL WHERE tenant_id = {t:String} AND user_id = {u:String} GROUP BY provider, agent_id ORDER BY provider, agent_id`,
        query_params: { t: tenantId, u: userId },
        format: 'JSONEachRow',
      });
      const rows = await rs.json<{ provider: string; agent_id: string; e: string; s: KeyStatus; d: string; at_ms: string }>();
      return rows.map((x) => ({ tenantId, userId, provider: x.provider, agentId: x.agent_id, executionId: x.e, status: x.s, detail: x.d, at: Number(x.at_ms) }));
    } catch (err) {
      throw new BillingError('FORGE_ERR_STORE_UNAVAILABLE', 'key health', { cause: err });
    }
  }
}
