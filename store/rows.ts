import { createHash } from 'node:crypto';
import type { CostEvent, GasSource, LlmTokens, TaskStatus } from './cost-event.ts';
import { STORE_ERROR_CODES, StoreError } from './errors.ts';

/**
 * Row encoding of cost_events and the canonical bytes the audit chain hashes.
 *
 * Canonical bytes of a row (version 1) = UTF-8 of JSON.stringify of this array, in this order:
 *   [1, tenant_id, seq, event_id, run_id, task_id, task_type, model, environment, status,
 *    event_time_ms, ingest_time_ms, rli_micros, gas_micros, compute_micros, storage_micros, llm_micros,
 *    total_micros, gas_used (decimal string), gas_price_gwei, native_usd, gas_source, chain_id, tx_hash,
 *    task_hours, compute_hour_usd, gb_stored, storage_gb_month_usd, llm_models[], llm_input_tokens[],
 *    llm_output_tokens[]]
 * Integers are JSON numbers (all are safe integers), strings JSON strings. hash = sha256(prev_hash || canonical)
 * as lowercase hex, where prev_hash is the previous row's hash (64 ASCII hex chars; 64 zeros before seq 1).
 * Everything in it round-trips through ClickHouse exactly, so `verify` recomputes it from the stored row.
 */
export const CANONICAL_VERSION = 1;
export const GENESIS_HASH = '0'.repeat(64);

/** The columns of a cost_events row in canonical order (without the leading version). */
export const HASHED_COLUMNS = [
  'tenant_id',
  'seq',
  'event_id',
  'run_id',
  'task_id',
  'task_type',
  'model',
  'environment',
  'status',
  'event_time',
  'ingest_time',
  'rli_micros',
  'gas_micros',
  'compute_micros',
  'storage_micros',
  'llm_micros',
  'total_micros',
  'gas_used',
  'gas_price_gwei',
  'native_usd',
  'gas_source',
  'chain_id',
  'tx_hash',
  'task_hours',
  'compute_hour_usd',
  'gb_stored',
  'storage_gb_month_usd',
  'llm_models',
  'llm_input_tokens',
  'llm_output_tokens',
] as const;

/** Insert column order: the hashed columns, then the chain links. */
export const INSERT_COLUMNS = [...HASHED_COLUMNS, 'prev_hash', 'hash'] as const;

/** SELECT list that reads a row back in canonical form (times as epoch ms, UInt64 as text where unsafe). */
export const CANONICAL_SELECT = HASHED_COLUMNS.map((c) => {
  if (c === 'event_time' || c === 'ingest_time') return `toUnixTimestamp64Milli(${c})`;
  if (c === 'gas_used') return 'toString(gas_used)';
  if (c === 'status') return 'toString(status)';
  return c;
}).join(', ');

const TENANT_RE = /^[A-Za-z0-9._-]{1,64}$/;
const RUN_RE = /^[A-Za-z0-9._:-]{1,128}$/;
const DECIMAL_RE = /^-?\d{1,30}(\.\d{1,30})?([eE][-+]?\d{1,3})?$/;
const UINT_RE = /^\d{1,20}$/;
const U64_MAX = (1n << 64n) - 1n;
/** DateTime64(3) holds 1900..2299; Forge takes epoch ms from 1970 to 2299. */
const MAX_TIME_MS = 10_413_792_000_000;
const STATUSES: ReadonlySet<string> = new Set<TaskStatus>(['success', 'failed', 'retried']);
const GAS_SOURCES: ReadonlySet<string> = new Set<GasSource>(['none', 'reported', 'receipt', 'pending', 'reverted', 'replaced']);

/** String.prototype.isWellFormed is ES2024; this is the same test. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function invalid(field: string, why: string): never {
  throw new StoreError(STORE_ERROR_CODES.INVALID, `${field} ${why}`, { field });
}

function str(v: unknown, field: string, max = 1024): string {
  if (typeof v !== 'string') invalid(field, 'must be a string');
  if (v.length > max) invalid(field, `must be at most ${max} characters`);
  if (LONE_SURROGATE.test(v)) invalid(field, 'must be well-formed Unicode');
  return v;
}

function re(v: unknown, field: string, rx: RegExp, what: string): string {
  const s = str(v, field);
  if (!rx.test(s)) invalid(field, `must be ${what}`);
  return s;
}

function uint(v: unknown, field: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) invalid(field, 'must be a non-negative safe integer');
  return v;
}

function decimal(v: unknown, field: string): string {
  const s = str(v, field, 80);
  if (s !== '' && !DECIMAL_RE.test(s)) invalid(field, 'must be a decimal string (or empty)');
  return s;
}

function time(v: unknown, field: string): number {
  const n = uint(v, field);
  if (n >= MAX_TIME_MS) invalid(field, 'must be epoch milliseconds before year 2300');
  return n;
}

function gasUsed(v: unknown, field: string): string {
  const s = str(v, field, 40);
  if (s === '') return '0';
  if (!UINT_RE.test(s) || BigInt(s) > U64_MAX) invalid(field, 'must be a UInt64 decimal string');
  return BigInt(s).toString();
}

/** The hashed values of one event (seq still 0), validated. Throws StoreError INVALID naming the field. */
export function eventValues(e: CostEvent, at: string): unknown[] {
  if (e === null || typeof e !== 'object') invalid(at, 'must be an object');
  const rli = uint(e.rliMicros, `${at}.rliMicros`);
  const gas = uint(e.gasMicros, `${at}.gasMicros`);
  const compute = uint(e.computeMicros, `${at}.computeMicros`);
  const storage = uint(e.storageMicros, `${at}.storageMicros`);
  const llm = uint(e.llmMicros, `${at}.llmMicros`);
  const total = uint(e.totalMicros, `${at}.totalMicros`);
  if (rli + gas + compute + storage + llm !== total) invalid(`${at}.totalMicros`, 'must equal the sum of the five components');
  if (!STATUSES.has(e.status)) invalid(`${at}.status`, "must be 'success', 'failed' or 'retried'");
  if (!GAS_SOURCES.has(e.gasSource)) invalid(`${at}.gasSource`, `must be one of ${[...GAS_SOURCES].join(', ')}`);
  const tokens: unknown = e.llmTokens ?? [];
  if (!Array.isArray(tokens)) invalid(`${at}.llmTokens`, 'must be an array');
  const models: string[] = [];
  const inputs: number[] = [];
  const outputs: number[] = [];
  (tokens as LlmTokens[]).forEach((t, i) => {
    const f = `${at}.llmTokens[${i}]`;
    if (t === null || typeof t !== 'object') invalid(f, 'must be an object');
    models.push(str(t.model, `${f}.model`, 256));
    inputs.push(uint(t.inputTokens, `${f}.inputTokens`));
    outputs.push(uint(t.outputTokens, `${f}.outputTokens`));
  });
  const eventId = str(e.eventId, `${at}.eventId`, 256);
  if (eventId === '') invalid(`${at}.eventId`, 'must not be empty');
  return [
    re(e.tenantId, `${at}.tenantId`, TENANT_RE, '1-64 letters, digits or ._-'),
    0,
    eventId,
    re(e.runId, `${at}.runId`, RUN_RE, '1-128 letters, digits or ._:-'),
    str(e.taskId, `${at}.taskId`, 256),
    str(e.taskType, `${at}.taskType`, 128),
    str(e.model, `${at}.model`, 256),
    str(e.environment, `${at}.environment`, 256),
    e.status,
    time(e.eventTime, `${at}.eventTime`),
    time(e.ingestTime, `${at}.ingestTime`),
    rli,
    gas,
    compute,
    storage,
    llm,
    total,
    gasUsed(e.gasUsed, `${at}.gasUsed`),
    decimal(e.gasPriceGwei, `${at}.gasPriceGwei`),
    decimal(e.nativeUsd, `${at}.nativeUsd`),
    e.gasSource,
    uint(e.chainId, `${at}.chainId`),
    str(e.txHash, `${at}.txHash`, 128),
    decimal(e.taskHours, `${at}.taskHours`),
    decimal(e.computeHourUsd, `${at}.computeHourUsd`),
    decimal(e.gbStored, `${at}.gbStored`),
    decimal(e.storageGbMonthUsd, `${at}.storageGbMonthUsd`),
    models,
    inputs,
    outputs,
  ];
}

/** Index of seq in the value array. */
export const SEQ_INDEX = 1;

export function canonicalBytes(values: readonly unknown[]): string {
  return canonicalFromBody(JSON.stringify(values));
}

/** Canonical bytes from JSON.stringify(values) (saves a second serialisation on the hot path). */
export function canonicalFromBody(body: string): string {
  return body.length > 2 ? `[${CANONICAL_VERSION},${body.slice(1)}` : `[${CANONICAL_VERSION}]`;
}

export function chainHash(prevHash: string, canonical: string): string {
  return createHash('sha256').update(prevHash).update(canonical).digest('hex');
}

/**
 * A row read back with CANONICAL_SELECT, normalised to the types it was hashed with (an HTTP server quotes
 * 64-bit integers in JSON, the embedded engine does not).
 */
export function normaliseRow(raw: unknown[]): unknown[] {
  const out = raw.slice();
  for (let i = 0; i < HASHED_COLUMNS.length; i++) {
    const c = HASHED_COLUMNS[i] as string;
    const v = out[i];
    if (c === 'llm_input_tokens' || c === 'llm_output_tokens') out[i] = (v as Array<string | number>).map(Number);
    else if (c === 'gas_used') out[i] = String(v);
    else if (typeof v === 'string' && (c === 'seq' || c === 'chain_id' || c.endsWith('_micros') || c.endsWith('_time'))) out[i] = Number(v);
  }
  return out;
}

/** Turns a stored row (canonical order) back into a CostEvent. */
export function rowToEvent(v: readonly unknown[]): CostEvent & { seq: number } {
  const models = v[27] as string[];
  const inputs = v[28] as number[];
  const outputs = v[29] as number[];
  return {
    tenantId: v[0] as string,
    seq: v[1] as number,
    eventId: v[2] as string,
    runId: v[3] as string,
    taskId: v[4] as string,
    taskType: v[5] as string,
    model: v[6] as string,
    environment: v[7] as string,
    status: v[8] as TaskStatus,
    eventTime: v[9] as number,
    ingestTime: v[10] as number,
    rliMicros: v[11] as number,
    gasMicros: v[12] as number,
    computeMicros: v[13] as number,
    storageMicros: v[14] as number,
    llmMicros: v[15] as number,
    totalMicros: v[16] as number,
    gasUsed: v[17] as string,
    gasPriceGwei: v[18] as string,
    nativeUsd: v[19] as string,
    gasSource: v[20] as GasSource,
    chainId: v[21] as number,
    txHash: v[22] as string,
    taskHours: v[23] as string,
    computeHourUsd: v[24] as string,
    gbStored: v[25] as string,
    storageGbMonthUsd: v[26] as string,
    llmTokens: models.map((model, i) => ({ model, inputTokens: inputs[i] ?? 0, outputTokens: outputs[i] ?? 0 })),
  };
}

/**
 * The canonical bytes of a stored event (what its chain hash covers), for auditors who recompute hashes
 * outside the store: hash = chainHash(prev_hash, eventCanonicalBytes(event)).
 */
export function eventCanonicalBytes(e: CostEvent & { seq: number }): string {
  const values = eventValues(e, 'event');
  values[SEQ_INDEX] = e.seq;
  return canonicalBytes(values);
}
