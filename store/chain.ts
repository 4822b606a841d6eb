import type { ClickHouseClient } from '@clickhouse/client';
import { STORE_ERROR_CODES, StoreError } from './errors.ts';
import { CANONICAL_SELECT, canonicalBytes, chainHash, GENESIS_HASH, HASHED_COLUMNS, normaliseRow, VERSION_SELECT } from './rows.ts';
import { checkTime } from './scope.ts';

export interface VerifyOptions {
  tenantId: string;
  /** First seq to check (default 1). The link into it is checked against row fromSeq-1. */
  fromSeq?: number;
  /** Last seq to check (default: the stream's head). */
  toSeq?: number;
  /** Or narrow by ingest time: rows ingested in [from, to) (epoch ms), translated to a seq range. */
  from?: number;
  to?: number;
  /** Rows read per query (default 20 000). */
  pageSize?: number;
}

export type BrokenReason =
  /** The row's hash is not sha256(prev_hash || canonical bytes): the row was changed. */
  | 'hash_mismatch'
  /** The row's prev_hash is not the previous row's hash: a row was changed, inserted or reordered. */
  | 'prev_hash_mismatch'
  /** A seq is missing: a row was removed. */
  | 'seq_gap'
  /** Two rows carry the same seq: a row was inserted behind the writer's back. */
  | 'duplicate_seq';

export type VerifyResult =
  | { ok: true; tenantId: string; checked: number; fromSeq: number; toSeq: number; headHash: string }
  | {
      ok: false;
      tenantId: string;
      checked: number;
      /** The first broken link: the row where the chain stops holding. */
      broken: { seq: number; eventId: string; reason: BrokenReason; expected?: string; actual?: string };
    };

/**
 * Walks one tenant's chain in seq order and reports the first broken link. Reads the raw table (no FINAL),
 * so a forged duplicate is seen, not collapsed. The walk is bounded by the tenant and a seq range: the
 * chain's own order (the only query on the log bounded by seq rather than by event time).
 */
export async function verifyChain(client: ClickHouseClient, database: string, opts: VerifyOptions): Promise<VerifyResult> {
  const table = `${database}.cost_events`;
  const tenantId = opts.tenantId;
  if (typeof tenantId !== 'string' || !/^[A-Za-z0-9._-]{1,64}$/.test(tenantId)) {
    throw new StoreError(STORE_ERROR_CODES.INVALID, 'tenantId must be 1-64 letters, digits or ._-', { field: 'tenantId' });
  }
  const pageSize = opts.pageSize ?? 20_000;
  const q = async <T>(query: string, params: Record<string, unknown>): Promise<T[]> =>
    (await client.query({ query, query_params: params, format: 'JSONCompactEachRow' })).json<T>();

  let fromSeq = opts.fromSeq ?? 1;
  let toSeq = opts.toSeq;
  if (opts.from !== undefined || opts.to !== undefined) {
    const from = checkTime(opts.from ?? 0, 'from');
    const to = checkTime(opts.to ?? Number.MAX_SAFE_INTEGER, 'to');
    const [r] = await q<[number | string, number | string, number | string]>(
      `SELECT min(seq), max(seq), count() FROM ${table}
WHERE tenant_id = {tenant:String}
  AND ingest_time >= fromUnixTimestamp64Milli({from:Int64}, 'UTC') AND ingest_time < fromUnixTimestamp64Milli({to:Int64}, 'UTC')`,
      { tenant: tenantId, from, to: Math.min(to, 10_413_791_999_999) },
    );
    if (!r || Number(r[2]) === 0) return { ok: true, tenantId, checked: 0, fromSeq, toSeq: fromSeq - 1, headHash: GENESIS_HASH };
    fromSeq = Math.max(fromSeq, Number(r[0]));
    toSeq = Math.min(toSeq ?? Number.MAX_SAFE_INTEGER, Number(r[1]));
  }
  if (!Number.isSafeInteger(fromSeq) || fromSeq < 1) throw new StoreError(STORE_ERROR_CODES.INVALID, 'fromSeq must be >= 1', { field: 'fromSeq' });
  if (toSeq === undefined) {
    const [r] = await q<[number | string]>(`SELECT max(seq) FROM ${table} WHERE tenant_id = {tenant:String}`, { tenant: tenantId });
    toSeq = Number(r?.[0] ?? 0);
  }

  let prevHash = GENESIS_HASH;
  if (fromSeq > 1) {
    const rows = await q<[string]>(`SELECT hash FROM ${table} WHERE tenant_id = {tenant:String} AND seq = {seq:UInt64}`, {
      tenant: tenantId,
      seq: fromSeq - 1,
    });
    if (rows.length !== 1) {
      return { ok: false, tenantId, checked: 0, broken: { seq: fromSeq - 1, eventId: '', reason: rows.length === 0 ? 'seq_gap' : 'duplicate_seq' } };
    }
    prevHash = (rows[0] as [string])[0];
  }

  const nHashed = HASHED_COLUMNS.length;
  let expected = fromSeq;
  let checked = 0;
  for (let lo = fromSeq; lo <= toSeq; lo += pageSize) {
    const hi = Math.min(toSeq, lo + pageSize - 1);
    const page = await q<unknown[]>(
      `SELECT ${CANONICAL_SELECT}, prev_hash, hash, ${VERSION_SELECT} FROM ${table}
WHERE tenant_id = {tenant:String} AND seq >= {lo:UInt64} AND seq <= {hi:UInt64}
ORDER BY seq, ingest_time, event_id`,
      { tenant: tenantId, lo, hi },
    );
    for (const raw of page) {
      const values = normaliseRow(raw);
      const seq = values[1] as number;
      const eventId = values[2] as string;
      const storedPrev = values[nHashed] as string;
      const storedHash = values[nHashed + 1] as string;
      const version = Number(values[nHashed + 2]);
      if (seq < expected) return { ok: false, tenantId, checked, broken: { seq, eventId, reason: 'duplicate_seq' } };
      if (seq > expected) return { ok: false, tenantId, checked, broken: { seq: expected, eventId, reason: 'seq_gap' } };
      if (storedPrev !== prevHash) {
        return { ok: false, tenantId, checked, broken: { seq, eventId, reason: 'prev_hash_mismatch', expected: prevHash, actual: storedPrev } };
      }
      const h = chainHash(storedPrev, canonicalBytes(values, version));
      if (h !== storedHash) return { ok: false, tenantId, checked, broken: { seq, eventId, reason: 'hash_mismatch', expected: h, actual: storedHash } };
      prevHash = storedHash;
      expected = seq + 1;
      checked++;
    }
  }
  if (expected <= toSeq) return { ok: false, tenantId, checked, broken: { seq: expected, eventId: '', reason: 'seq_gap' } };
  return { ok: true, tenantId, checked, fromSeq, toSeq, headHash: prevHash };
}
