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
  /** The writer's stream of the tenant (0: the only one of a single writer, and every row written before streams). */
  stream: number;
  /** When the head was recorded, epoch ms. */
  updatedAt: number;
}

export function checkChainLog(log: unknown, field = 'log'): ChainLog {
  if (!CHAIN_LOGS.includes(log as ChainLog)) throw new StoreError(STORE_ERROR_CODES.INVALID, `${field} must be one of ${CHAIN_LOGS.join(', ')}`, { field });
  return log as ChainLog;
}

/**
 * Streams. Each writer process appends to a tenant's logs on a stream of its own (a writer slot, claimed for
 * as long as the process runs: guard/writer-slot.ts), so two processes writing the same tenant never take the
 * same seq: each stream is one chain, with one writer, verified on its own. Stream 0 is the single process's
 * (the embedded engine) and holds every row written before streams. A stream is named by its key: the tenant
 * id for stream 0 (so the heads and watermarks recorded before streams keep naming it), `<tenant>/<stream>`
 * otherwise ('/' is not in a tenant id). chain_heads and the snapshot watermarks are keyed by it.
 */
export const MAX_STREAM = 65_535;

export function checkStream(stream: unknown, field = 'stream'): number {
  if (!Number.isInteger(stream) || (stream as number) < 0 || (stream as number) > MAX_STREAM) throw new StoreError(STORE_ERROR_CODES.INVALID, `${field} must be an integer 0..${MAX_STREAM}`, { field });
  return stream as number;
}

export function streamKey(tenantId: string, stream: number): string {
  return stream === 0 ? tenantId : `${tenantId}/${stream}`;
}

export function parseStreamKey(key: string): { tenantId: string; stream: number } {
  const i = key.lastIndexOf('/');
  if (i < 0) return { tenantId: key, stream: 0 };
  return { tenantId: key.slice(0, i), stream: Number(key.slice(i + 1)) };
}

/** The stream key of a log row, in SQL (the rows' tenant_id and stream columns). */
export const STREAM_KEY_SQL = "if(stream = 0, toString(tenant_id), concat(toString(tenant_id), '/', toString(stream)))";

/** The recorded heads of these tenants' streams `stream` of one log, by tenant (a stream without a record is absent). */
export async function recordedHeads(client: ClickHouseClient, database: string, log: ChainLog, tenants: readonly string[], stream = 0): Promise<Map<string, Head>> {
  const out = new Map<string, Head>();
  if (tenants.length === 0) return out;
  const keys = new Map(tenants.map((t) => [streamKey(t, stream), t]));
  const rs = await client.query({
    query: `SELECT tenant_id, max(seq) AS s, argMax(hash, seq) AS h FROM ${database}.chain_heads
WHERE log = {log:String} AND tenant_id IN {keys:Array(String)}
GROUP BY tenant_id`,
    query_params: { log, keys: [...keys.keys()] },
    format: 'JSONCompactEachRow',
  });
  for (const [k, s, h] of await rs.json<[string, number | string, string]>()) out.set(keys.get(k) as string, { seq: Number(s), hash: h });
  return out;
}

/** Every recorded head (optionally of one log or one tenant's streams), ordered by log, tenant and stream. */
export async function listHeads(client: ClickHouseClient, database: string, opts: { log?: ChainLog; tenantId?: string } = {}): Promise<ChainHead[]> {
  const where: string[] = [];
  const params: Record<string, unknown> = {};
  if (opts.log !== undefined) {
    where.push('log = {log:String}');
    params.log = checkChainLog(opts.log);
  }
  if (opts.tenantId !== undefined) {
    where.push("(tenant_id = {tenant:String} OR startsWith(tenant_id, concat({tenant:String}, '/')))");
    params.tenant = opts.tenantId;
  }
  const rs = await client.query({
    query: `SELECT log, tenant_id, max(seq) AS s, argMax(hash, seq) AS h, toUnixTimestamp64Milli(argMax(updated_at, seq)) AS u
FROM ${database}.chain_heads${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''}
GROUP BY log, tenant_id`,
    query_params: params,
    format: 'JSONCompactEachRow',
  });
  const heads = (await rs.json<[ChainLog, string, number | string, string, number | string]>()).map(([log, key, s, h, u]) => ({ log, ...parseStreamKey(key), seq: Number(s), hash: h, updatedAt: Number(u) }));
  return heads.sort((a, b) => (a.log !== b.log ? (a.log < b.log ? -1 : 1) : a.tenantId !== b.tenantId ? (a.tenantId < b.tenantId ? -1 : 1) : a.stream - b.stream));
}

/**
 * Records new heads of these tenants' streams `stream`. Called right after the insert that advanced the chains: if it fails (or the process
 * dies first), the rows run past the recorded head, which verify reports (pastHead) but does not call broken;
 * the next append records the head again.
 */
export async function recordHeads(client: ClickHouseClient, database: string, log: ChainLog, heads: ReadonlyMap<string, Head>, stream = 0, now = Date.now()): Promise<void> {
  if (heads.size === 0) return;
  const values = [...heads].map(([tenant, h]) => ({ log, tenant_id: streamKey(tenant, stream), seq: h.seq, hash: h.hash, updated_at: now }));
  const token = createHash('sha256').update(JSON.stringify(values)).digest('hex');
  // Every insert names its own token: the embedded connection keeps settings of earlier statements.
  await client.insert({ table: `${database}.chain_heads`, values, format: 'JSONEachRow', clickhouse_settings: { insert_deduplication_token: token } });
}
