import type { ClickHouseClient } from '@clickhouse/client';
import { STORE_ERROR_CODES, StoreError } from './errors.ts';
import { GUARDRAIL_CANONICAL_SELECT, GUARDRAIL_HASHED_COLUMNS, guardrailCanonicalBytes, normaliseGuardrailRow } from './guardrail-log.ts';
import { checkChainLog, checkStream, listHeads, recordedHeads, type ChainLog, type Head } from './heads.ts';
import { CANONICAL_SELECT, canonicalBytes, chainHash, GENESIS_HASH, HASHED_COLUMNS, normaliseRow, VERSION_SELECT } from './rows.ts';
import { checkTime } from './scope.ts';

export interface VerifyOptions {
  /** The tenant's stream; '' is the global stream of guardrail_events (cost_events has none). */
  tenantId: string;
  /** Which log's chain (default 'cost_events'). */
  log?: ChainLog;
  /** The tenant's stream (a writer's, store/heads.ts; default 0, the single writer's and the rows before streams). */
  stream?: number;
  /** First seq to check (default 1). The link into it is checked against row fromSeq-1. */
  fromSeq?: number;
  /** Last seq to check (default: the stream's head). */
  toSeq?: number;
  /** Or narrow by ingest time (guardrail_events: recorded time): rows in [from, to) (epoch ms), translated to a seq range. */
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
  | 'duplicate_seq'
  /** The rows end before the recorded head (chain_heads): the stream's newest rows were removed. */
  | 'head_not_reached'
  /** The row at the recorded head's seq has another hash than the head recorded: the row or the head was changed. */
  | 'head_mismatch'
  /** A guardrail row without a chain link, recorded after the stream's chain began: written behind the chain's back. */
  | 'unchained_row';

const MESSAGES: Record<BrokenReason, string> = {
  hash_mismatch: 'the row does not hash to its stored hash: it was changed',
  prev_hash_mismatch: 'the row does not link to the previous row: a row was changed, inserted or reordered',
  seq_gap: 'a seq is missing: a row was removed',
  duplicate_seq: 'two rows carry the same seq: a row was inserted behind the writer',
  head_not_reached: 'the rows end before the recorded chain head: the newest rows were removed',
  head_mismatch: 'the row at the recorded head has another hash than the head: the row or the head was changed',
  unchained_row: 'a row without a chain link was recorded after the chain began: it was written behind the chain',
};

export type VerifyResult =
  | {
      ok: true;
      log: ChainLog;
      tenantId: string;
      stream: number;
      checked: number;
      fromSeq: number;
      toSeq: number;
      headHash: string;
      /**
       * The head recorded in chain_heads (null: none recorded, e.g. a stream written before heads were kept);
       * only read when the walk runs to the stream's end (no toSeq, no `to`).
       */
      recordedHead?: Head | null;
      /** Rows past the recorded head (a writer stopped between its rows and its head; the next append records it). */
      pastHead?: number;
      /** guardrail_events: rows written before the log was chained (no link), not part of the chain. */
      legacy?: number;
    }
  | {
      ok: false;
      log: ChainLog;
      tenantId: string;
      stream: number;
      checked: number;
      /** The first broken link: the row where the chain stops holding. */
      broken: { seq: number; eventId: string; reason: BrokenReason; message: string; expected?: string; actual?: string };
      legacy?: number;
    };

interface ChainSpec {
  table: string;
  seqCol: string;
  timeCol: string;
  select: string;
  nHashed: number;
  /** Extra WHERE for chained rows ('' when every row is chained). */
  chained: string;
  /** Columns read after prev_hash and hash (cost_events: the row's canonical version). */
  extra?: string;
  normalise(raw: unknown[]): unknown[];
  /** The canonical bytes of the hashed values; `row` is the whole row read (for its version). */
  canonical(values: unknown[], row: unknown[]): string;
}

const SPECS: Record<ChainLog, ChainSpec> = {
  cost_events: {
    table: 'cost_events',
    seqCol: 'seq',
    timeCol: 'ingest_time',
    select: CANONICAL_SELECT,
    nHashed: HASHED_COLUMNS.length,
    chained: '',
    extra: VERSION_SELECT,
    normalise: normaliseRow,
    // Each row is hashed under the canonical version it was written with (rows before versions: 1).
    canonical: (values, row) => canonicalBytes(values, Number(row[HASHED_COLUMNS.length + 2]) || 1),
  },
  guardrail_events: {
    table: 'guardrail_events',
    seqCol: 'chain_seq',
    timeCol: 'recorded_at',
    select: GUARDRAIL_CANONICAL_SELECT,
    nHashed: GUARDRAIL_HASHED_COLUMNS.length,
    chained: ' AND chain_seq > 0',
    normalise: normaliseGuardrailRow,
    canonical: (values) => guardrailCanonicalBytes(values),
  },
};

const TENANT_RE = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * Walks one stream's chain in seq order and reports the first broken link. Reads the raw table (no FINAL),
 * so a forged duplicate is seen, not collapsed. The walk is bounded by the tenant and a seq range: the
 * chain's own order (the only query on the log bounded by seq rather than by event time). A walk to the end
 * also checks that the rows reach the head recorded in chain_heads, so removing the newest rows is seen.
 */
export async function verifyChain(client: ClickHouseClient, database: string, opts: VerifyOptions): Promise<VerifyResult> {
  const log = checkChainLog(opts.log ?? 'cost_events');
  const spec = SPECS[log];
  const table = `${database}.${spec.table}`;
  const S = spec.seqCol;
  const tenantId = opts.tenantId;
  if (typeof tenantId !== 'string' || !(TENANT_RE.test(tenantId) || (log === 'guardrail_events' && tenantId === ''))) {
    throw new StoreError(STORE_ERROR_CODES.INVALID, `tenantId must be 1-64 letters, digits or ._-${log === 'guardrail_events' ? " (or '' for the global stream)" : ''}`, { field: 'tenantId' });
  }
  const stream = checkStream(opts.stream ?? 0);
  // Every read of the log is of this stream: its rows are the chain.
  const inStream = `tenant_id = {tenant:String} AND stream = {stream:UInt16}`;
  const pageSize = opts.pageSize ?? 20_000;
  const q = async <T>(query: string, params: Record<string, unknown>): Promise<T[]> =>
    (await client.query({ query, query_params: { stream, ...params }, format: 'JSONCompactEachRow' })).json<T>();
  const fail = (checked: number, b: { seq: number; eventId: string; reason: BrokenReason; expected?: string; actual?: string }, legacy?: number): VerifyResult => ({
    ok: false,
    log,
    tenantId,
    stream,
    checked,
    broken: { ...b, message: MESSAGES[b.reason] },
    ...(legacy === undefined ? {} : { legacy }),
  });

  let legacy: number | undefined;
  // Rows before the chain were written before streams too: stream 0's legacy prefix.
  if (log === 'guardrail_events' && stream === 0) {
    const [r] = await q<[number | string]>(`SELECT count() FROM ${table} WHERE ${inStream} AND chain_seq = 0`, { tenant: tenantId });
    legacy = Number(r?.[0] ?? 0);
  }
  const withLegacy = legacy === undefined ? {} : { legacy };

  let fromSeq = opts.fromSeq ?? 1;
  let toSeq = opts.toSeq;
  const toEnd = opts.toSeq === undefined && opts.to === undefined;
  if (opts.from !== undefined || opts.to !== undefined) {
    const from = checkTime(opts.from ?? 0, 'from');
    const to = checkTime(opts.to ?? Number.MAX_SAFE_INTEGER, 'to');
    const [r] = await q<[number | string, number | string, number | string]>(
      `SELECT min(${S}), max(${S}), count() FROM ${table}
WHERE ${inStream}${spec.chained}
  AND ${spec.timeCol} >= fromUnixTimestamp64Milli({from:Int64}, 'UTC') AND ${spec.timeCol} < fromUnixTimestamp64Milli({to:Int64}, 'UTC')`,
      { tenant: tenantId, from, to: Math.min(to, 10_413_791_999_999) },
    );
    if (!r || Number(r[2]) === 0) {
      if (!toEnd) return { ok: true, log, tenantId, stream, checked: 0, fromSeq, toSeq: fromSeq - 1, headHash: GENESIS_HASH, ...withLegacy };
      // Nothing in the range, but the walk was to run to the end: check from the end.
      const [m] = await q<[number | string]>(`SELECT max(${S}) FROM ${table} WHERE ${inStream}`, { tenant: tenantId });
      fromSeq = Number(m?.[0] ?? 0) + 1;
    } else {
      fromSeq = Math.max(fromSeq, Number(r[0]));
      toSeq = Math.min(toSeq ?? Number.MAX_SAFE_INTEGER, Number(r[1]));
    }
  }
  if (!Number.isSafeInteger(fromSeq) || fromSeq < 1) throw new StoreError(STORE_ERROR_CODES.INVALID, 'fromSeq must be >= 1', { field: 'fromSeq' });
  if (toSeq === undefined || (toEnd && opts.from !== undefined)) {
    const [r] = await q<[number | string]>(`SELECT max(${S}) FROM ${table} WHERE ${inStream}`, { tenant: tenantId });
    toSeq = Number(r?.[0] ?? 0);
  }
  const head = toEnd ? ((await recordedHeads(client, database, log, [tenantId], stream)).get(tenantId) ?? null) : undefined;

  let prevHash = GENESIS_HASH;
  if (fromSeq > 1) {
    const rows = await q<[string]>(`SELECT hash FROM ${table} WHERE ${inStream} AND ${S} = {seq:UInt64}`, {
      tenant: tenantId,
      seq: fromSeq - 1,
    });
    if (rows.length !== 1) return fail(0, { seq: fromSeq - 1, eventId: '', reason: rows.length === 0 ? 'seq_gap' : 'duplicate_seq' }, legacy);
    prevHash = (rows[0] as [string])[0];
  }

  const nHashed = spec.nHashed;
  let expected = fromSeq;
  let checked = 0;
  let hashAtHead: string | undefined = head && head.seq === fromSeq - 1 ? prevHash : undefined;
  for (let lo = fromSeq; lo <= toSeq; lo += pageSize) {
    const hi = Math.min(toSeq, lo + pageSize - 1);
    const page = await q<unknown[]>(
      `SELECT ${spec.select}, prev_hash, hash${spec.extra ? `, ${spec.extra}` : ''} FROM ${table}
WHERE ${inStream} AND ${S} >= {lo:UInt64} AND ${S} <= {hi:UInt64}
ORDER BY ${S}, ${spec.timeCol}, event_id`,
      { tenant: tenantId, lo, hi },
    );
    for (const raw of page) {
      const values = spec.normalise(raw);
      const seq = values[1] as number;
      const eventId = values[2] as string;
      const storedPrev = values[nHashed] as string;
      const storedHash = values[nHashed + 1] as string;
      if (seq < expected) return fail(checked, { seq, eventId, reason: 'duplicate_seq' }, legacy);
      if (seq > expected) return fail(checked, { seq: expected, eventId, reason: 'seq_gap' }, legacy);
      if (storedPrev !== prevHash) return fail(checked, { seq, eventId, reason: 'prev_hash_mismatch', expected: prevHash, actual: storedPrev }, legacy);
      const h = chainHash(storedPrev, spec.canonical(values.slice(0, nHashed), values));
      if (h !== storedHash) return fail(checked, { seq, eventId, reason: 'hash_mismatch', expected: h, actual: storedHash }, legacy);
      prevHash = storedHash;
      if (head && seq === head.seq) hashAtHead = storedHash;
      expected = seq + 1;
      checked++;
    }
  }
  if (expected <= toSeq) return fail(checked, { seq: expected, eventId: '', reason: 'seq_gap' }, legacy);
  if (head === undefined) return { ok: true, log, tenantId, stream, checked, fromSeq, toSeq, headHash: prevHash, ...withLegacy };

  if (head !== null) {
    if (head.seq > toSeq) return fail(checked, { seq: toSeq + 1, eventId: '', reason: 'head_not_reached', expected: `seq ${head.seq} ${head.hash}`, actual: `rows end at seq ${toSeq}` }, legacy);
    if (head.seq >= fromSeq - 1 && head.seq > 0 && hashAtHead !== head.hash) {
      return fail(checked, { seq: head.seq, eventId: '', reason: 'head_mismatch', expected: head.hash, ...(hashAtHead === undefined ? {} : { actual: hashAtHead }) }, legacy);
    }
  }
  if (log === 'guardrail_events' && toSeq > 0 && (legacy ?? 0) > 0) {
    // Legacy rows predate the chain; one recorded after the chain began was written around it.
    const stray = await q<[string, number | string]>(
      `SELECT event_id, seq FROM ${table} WHERE ${inStream} AND chain_seq = 0
  AND recorded_at >= (SELECT min(recorded_at) FROM ${table} WHERE ${inStream} AND chain_seq > 0)
ORDER BY recorded_at LIMIT 1`,
      { tenant: tenantId },
    );
    if (stray[0]) return fail(checked, { seq: 0, eventId: stray[0][0], reason: 'unchained_row' }, legacy);
  }
  return { ok: true, log, tenantId, stream, checked, fromSeq, toSeq, headHash: prevHash, recordedHead: head, pastHead: Math.max(0, toSeq - (head?.seq ?? 0)), ...withLegacy };
}

/** Every stream of a tenant's log, verified each on its own (store/heads.ts: one chain per writer's stream). */
export interface StreamsVerifyResult {
  /** Every stream verified. */
  ok: boolean;
  log: ChainLog;
  tenantId: string;
  /** Rows checked over all streams. */
  checked: number;
  /** Per stream, in stream order (stream 0 always: the single writer's, and the rows before streams). */
  streams: VerifyResult[];
}

/**
 * Walks every stream of the tenant's log: the streams holding rows and the streams with a recorded head (whose
 * rows may all have been removed), each against its own head. Options as verifyChain's, for every stream.
 */
export async function verifyStreams(client: ClickHouseClient, database: string, opts: Omit<VerifyOptions, 'stream'>): Promise<StreamsVerifyResult> {
  const log = checkChainLog(opts.log ?? 'cost_events');
  const rs = await client.query({
    query: `SELECT DISTINCT stream FROM ${database}.${SPECS[log].table} WHERE tenant_id = {tenant:String}`,
    query_params: { tenant: typeof opts.tenantId === 'string' ? opts.tenantId : '' },
    format: 'JSONCompactEachRow',
  });
  const streams = new Set<number>([0]);
  for (const [s] of await rs.json<[number | string]>()) streams.add(Number(s));
  if (typeof opts.tenantId === 'string') for (const h of await listHeads(client, database, { log, tenantId: opts.tenantId })) if (h.tenantId === opts.tenantId) streams.add(h.stream);
  const results: VerifyResult[] = [];
  for (const stream of [...streams].sort((a, b) => a - b)) results.push(await verifyChain(client, database, { ...opts, log, stream }));
  return { ok: results.every((r) => r.ok), log, tenantId: opts.tenantId, checked: results.reduce((n, r) => n + r.checked, 0), streams: results };
}
