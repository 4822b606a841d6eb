import { createHash } from 'node:crypto';
import type { ClickHouseClient } from '@clickhouse/client';
import { STORE_ERROR_CODES, StoreError } from './errors.ts';

/** The logs that carry a hash chain (one chain per tenant stream in each). */
export type ChainLog = 'cost_events' | 'guardrail_events';
export const CHAIN_LOGS: readonly ChainLog[] = ['cost_events', 'guardrail_events'];

/** A chain's newest position: the seq of its newest row and that row's hash. */
export interface Head {
  seq: number;
  hash: string;
}

/** A chain head as recorded in chain_heads (tenantId '' is the global guardrail stream). */
export interface ChainHead extends Head {
  log: ChainLog;
  tenantId: string;
  /** When the head was recorded, epoch ms. */
  updatedAt: number;
}

export function checkChainLog(log: unknown, field = 'log'): ChainLog {
  if (!CHAIN_LOGS.includes(log as ChainLog)) throw new StoreError(STORE_ERROR_CODES.INVALID, `${field} must be one of ${CHAIN_LOGS.join(', ')}`, { field });
  return log as ChainLog;
}

/** The recorded heads of these streams of one log (a stream without a record is absent). */
export async function recordedHeads(client: ClickHouseClient, database: string, log: ChainLog, tenants: readonly string[]): Promise<Map<string, Head>> {
  const out = new Map<string, Head>();
  if (tenants.length === 0) return out;
  const rs = await client.query({
    query: `SELECT tenant_id, max(seq) AS s, argMax(hash, seq) AS h FROM ${database}.chain_heads
WHERE log = {log:String} AND tenant_id IN {tenants:Array(String)}
GROUP BY tenant_id`,
    query_params: { log, tenants: [...tenants] },
    format: 'JSONCompactEachRow',
  });
  for (const [t, s, h] of await rs.json<[string, number | string, string]>()) out.set(t, { seq: Number(s), hash: h });
  return out;
}

/** Every recorded head (optionally of one log or one stream), ordered by log and tenant. */
export async function listHeads(client: ClickHouseClient, database: string, opts: { log?: ChainLog; tenantId?: string } = {}): Promise<ChainHead[]> {
  const where: string[] = [];
  const params: Record<string, unknown> = {};
  if (opts.log !== undefined) {
    where.push('log = {log:String}');
    params.log = checkChainLog(opts.log);
  }
  if (opts.tenantId !== undefined) {
    where.push('tenant_id = {tenant:String}');
    params.tenant = opts.tenantId;
  }
  const rs = await client.query({
    query: `SELECT log, tenant_id, max(seq) AS s, argMax(hash, seq) AS h, toUnixTimestamp64Milli(argMax(updated_at, seq)) AS u
FROM ${database}.chain_heads${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''}
GROUP BY log, tenant_id ORDER BY log, tenant_id`,
    query_params: params,
    format: 'JSONCompactEachRow',
  });
  return (await rs.json<[ChainLog, string, number | string, string, number | string]>()).map(([log, tenantId, s, h, u]) => ({ log, tenantId, seq: Number(s), hash: h, updatedAt: Number(u) }));
}

/**
 * Records new heads. Called right after the insert that advanced the chains: if it fails (or the process
 * dies first), the rows run past the recorded head, which verify reports (pastHead) but does not call broken;
 * the next append records the head again.
 */
export async function recordHeads(client: ClickHouseClient, database: string, log: ChainLog, heads: ReadonlyMap<string, Head>, now = Date.now()): Promise<void> {
  if (heads.size === 0) return;
  const values = [...heads].map(([tenant_id, h]) => ({ log, tenant_id, seq: h.seq, hash: h.hash, updated_at: now }));
  const token = createHash('sha256').update(JSON.stringify(values)).digest('hex');
  // Every insert names its own token: the embedded connection keeps settings of earlier statements.
  await client.insert({ table: `${database}.chain_heads`, values, format: 'JSONEachRow', clickhouse_settings: { insert_deduplication_token: token } });
}
