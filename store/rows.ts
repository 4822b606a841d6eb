import { createHash } from 'node:crypto';
import { COMPONENT_SPECS, COMPONENTS, METERED_COMPONENTS, type Component } from '../rules/index.ts';
import { componentFields, eventComponents, KEY_SOURCES, type Attribution, type CostEvent, type GasSource, type KeySource, type LlmTokens, type TaskStatus } from './cost-event.ts';
import { STORE_ERROR_CODES, StoreError } from './errors.ts';

/**
 * Row encoding of cost_events and the canonical bytes the audit chain hashes.
 *
 * Canonical bytes of a row (version v) = UTF-8 of JSON.stringify of this array, in this order:
 *   [v, tenant_id, seq, event_id, run_id, task_id, task_type, model, environment, status,
 *    event_time_ms, ingest_time_ms, <component>_micros of the version-1 components (rli, gas, compute,
 *    storage, llm), total_micros, gas_used (decimal string), gas_price_gwei, native_usd, gas_source, chain_id,
 *    tx_hash, task_hours, compute_hour_usd, gb_stored, storage_gb_month_usd, llm_models[], llm_input_tokens[],
 *    llm_output_tokens[], then for each version w = 2..v the columns of the components added in w
 *    (COMPONENT_SPECS `since`, in list order): <component>_micros, and <component>_quantity when metered,
 *    and in version 3 (ATTRIBUTION_SINCE) user_id, agent_id, skill_id, key_source]
 * Integers are JSON numbers (all are safe integers), strings JSON strings. hash = sha256(prev_hash || canonical)
 * as lowercase hex, where prev_hash is the previous row's hash (64 ASCII hex chars; 64 zeros before seq 1).
 * Everything in it round-trips through ClickHouse exactly, so `verify` recomputes it from the stored row.
 * A row stores the version it was hashed with (`canonical_version`, 1 for rows older than the column), so a
 * component added later never changes the bytes of a row written before it.
 */
/**
 * The canonical version that first hashes the attribution columns (user, agent, skill, key source; store
 * migration 0010). Rows of older versions read them as '' and keep verifying.
 */
export const ATTRIBUTION_SINCE = 3;
export const ATTRIBUTION_COLUMNS = ['user_id', 'agent_id', 'skill_id', 'key_source'] as const;
export const CANONICAL_VERSION = Math.max(ATTRIBUTION_SINCE, ...COMPONENT_SPECS.map((c) => c.since));
export const GENESIS_HASH = '0'.repeat(64);

/** The column of a component's amount. */
export function componentColumn(c: Component): string {
  return `${c}_micros`;
}

/** The column of a metered component's quantity. */
export function quantityColumn(c: Component): string {
  return `${c}_quantity`;
}

function columnsAddedIn(version: number): string[] {
  return [
    ...COMPONENT_SPECS.filter((c) => c.since === version).flatMap((c) => ('metered' in c ? [componentColumn(c.key), quantityColumn(c.key)] : [componentColumn(c.key)])),
    ...(version === ATTRIBUTION_SINCE ? ATTRIBUTION_COLUMNS : []),
  ];
}

const BASE_COLUMNS = [
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
  ...columnsAddedIn(1),
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
];

/** How many leading HASHED_COLUMNS the canonical bytes of `version` cover. */
const HASHED_COUNT: number[] = [0, BASE_COLUMNS.length];
for (let v = 2; v <= CANONICAL_VERSION; v++) HASHED_COUNT[v] = (HASHED_COUNT[v - 1] as number) + columnsAddedIn(v).length;

/** The columns of a cost_events row in canonical order (without the leading version), newest version. */
export const HASHED_COLUMNS: readonly string[] = [...BASE_COLUMNS, ...Array.from({ length: CANONICAL_VERSION - 1 }, (_, i) => columnsAddedIn(i + 2)).flat()];

/** Number of leading hashed values a row of canonical version `version` covers. */
export function hashedCount(version: number): number {
  const n = HASHED_COUNT[version];
  if (n === undefined || version < 1) throw new StoreError(STORE_ERROR_CODES.INVALID, `unknown canonical version ${version}`, { field: 'canonical_version' });
  return n;
}

/** Insert column order: the hashed columns, then the chain links and the canonical version. */
export const INSERT_COLUMNS: readonly string[] = [...HASHED_COLUMNS, 'prev_hash', 'hash', 'canonical_version'];

/** SELECT list that reads a row back in canonical form (times as epoch ms, UInt64 as text where unsafe). */
export const CANONICAL_SELECT = HASHED_COLUMNS.map((c) => {
  if (c === 'event_time' || c === 'ingest_time') return `toUnixTimestamp64Milli(${c})`;
  if (c === 'gas_used') return 'toString(gas_used)';
  if (c === 'status') return 'toString(status)';
  return c;
}).join(', ');

/** The canonical version a stored row was hashed with (1 for rows older than the column). */
export const VERSION_SELECT = 'canonical_version';

const COLUMN_INDEX = new Map(HASHED_COLUMNS.map((c, i) => [c, i]));
function col(name: string): number {
  return COLUMN_INDEX.get(name) as number;
}

const TENANT_RE = /^[A-Za-z0-9._-]{1,64}$/;
const RUN_RE = /^[A-Za-z0-9._:-]{1,128}$/;
/** Attribution ids (user, agent, skill): the billing user-id pattern, or empty (not attributed). */
const ATTRIBUTION_ID_RE = /^([A-Za-z0-9._:@-]{1,128})?$/;
const DECIMAL_RE = /^-?\d{1,30}(\.\d{1,30})?([eE][-+]?\d{1,3})?$/;
const UINT_RE = /^\d{1,20}$/;
const U64_MAX = (1n << 64n) - 1n;
/** DateTime64(3) holds 1900..2299; Forge takes epoch ms from 1970 to 2299. */
const MAX_TIME_MS = 10_413_792_000_000;
const STATUSES: ReadonlySet<string> = new Set<TaskStatus>(['success', 'failed', 'retried']);
const GAS_SOURCES: ReadonlySet<string> = new Set<GasSource>(['none', 'reported', 'receipt', 'pending', 'reverted', 'replaced']);

/** String.prototype.isWellFormed is ES2024; this is the same test. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
/** Any surrogate at all: most strings have none, and this test is several times cheaper than the one above. */
const SURROGATE = /[\uD800-\uDFFF]/;

function invalid(field: string, why: string): never {
  throw new StoreError(STORE_ERROR_CODES.INVALID, `${field} ${why}`, { field });
}

/*
 * The checks take the field as the event's path and the field's name, joined only to name a failure: an
 * event has some thirty fields and is checked on every write.
 */
function str(v: unknown, at: string, name: string, max = 1024): string {
  if (typeof v !== 'string') invalid(`${at}.${name}`, 'must be a string');
  if (v.length > max) invalid(`${at}.${name}`, `must be at most ${max} characters`);
  if (SURROGATE.test(v) && LONE_SURROGATE.test(v)) invalid(`${at}.${name}`, 'must be well-formed Unicode');
  return v;
}

function re(v: unknown, at: string, name: string, rx: RegExp, what: string): string {
  const s = str(v, at, name);
  if (!rx.test(s)) invalid(`${at}.${name}`, `must be ${what}`);
  return s;
}

function uint(v: unknown, at: string, name: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) invalid(`${at}.${name}`, 'must be a non-negative safe integer');
  return v;
}

function decimal(v: unknown, at: string, name: string): string {
  const s = str(v, at, name, 80);
  if (s !== '' && !DECIMAL_RE.test(s)) invalid(`${at}.${name}`, 'must be a decimal string (or empty)');
  return s;
}

function time(v: unknown, at: string, name: string): number {
  const n = uint(v, at, name);
  if (n >= MAX_TIME_MS) invalid(`${at}.${name}`, 'must be epoch milliseconds before year 2300');
  return n;
}

function gasUsed(v: unknown, at: string, name: string): string {
  const s = str(v, at, name, 40);
  if (s === '') return '0';
  // Up to 15 digits the number is exact and far below 2^64: its decimal form without leading zeros.
  if (s.length <= 15 && UINT_RE.test(s)) return String(Number(s));
  if (!UINT_RE.test(s) || BigInt(s) > U64_MAX) invalid(`${at}.${name}`, 'must be a UInt64 decimal string');
  return BigInt(s).toString();
}

/*
 * The layout of an event's values, worked out once from COMPONENT_SPECS (eventValues runs for every event
 * written, so it does not filter the specs per call): the components hashed from version 1, and the
 * values each later version appends (a component's amount, a metered component's quantity, the attribution).
 */
const FIRST_COMPONENTS: readonly Component[] = COMPONENT_SPECS.filter((c) => c.since === 1).map((c) => c.key);
type LaterValue = { kind: 'amount'; key: Component } | { kind: 'quantity'; key: Component } | { kind: 'attribution' };
const LATER_VALUES: readonly LaterValue[] = Array.from({ length: CANONICAL_VERSION - 1 }, (_, i) => i + 2).flatMap((v): LaterValue[] => [
  ...COMPONENT_SPECS.filter((c) => c.since === v).flatMap((c): LaterValue[] =>
    'metered' in c ? [{ kind: 'amount', key: c.key }, { kind: 'quantity', key: c.key }] : [{ kind: 'amount', key: c.key }],
  ),
  ...(v === ATTRIBUTION_SINCE ? [{ kind: 'attribution' } as const] : []),
]);
const MICROS_NAMES = Object.fromEntries(COMPONENTS.map((k) => [k, `${k}Micros`])) as Record<Component, string>;
const METERED_KEYS: ReadonlySet<string> = new Set(METERED_COMPONENTS.map((m) => m.key));
const HAS_OWN = Object.prototype.hasOwnProperty;

/** The hashed values of one event (seq still 0), validated. Throws StoreError INVALID naming the field. */
export function eventValues(e: CostEvent, at: string): unknown[] {
  if (e === null || typeof e !== 'object') invalid(at, 'must be an object');
  const amounts = eventComponents(e);
  let sum = 0;
  for (const k of COMPONENTS) sum += uint(amounts[k], at, MICROS_NAMES[k]);
  const total = uint(e.totalMicros, at, 'totalMicros');
  if (sum !== total) invalid(`${at}.totalMicros`, 'must equal the sum of the components');
  const metered: unknown = e.metered ?? {};
  if (metered === null || typeof metered !== 'object' || Array.isArray(metered)) invalid(`${at}.metered`, 'must be an object');
  for (const k in metered) if (HAS_OWN.call(metered, k) && !METERED_KEYS.has(k)) invalid(`${at}.metered.${k}`, 'is not a metered component');
  const quantities = metered as Partial<Record<Component, unknown>>;
  if (!STATUSES.has(e.status)) invalid(`${at}.status`, "must be 'success', 'failed' or 'retried'");
  if (!GAS_SOURCES.has(e.gasSource)) invalid(`${at}.gasSource`, `must be one of ${[...GAS_SOURCES].join(', ')}`);
  const tokens: unknown = e.llmTokens ?? [];
  if (!Array.isArray(tokens)) invalid(`${at}.llmTokens`, 'must be an array');
  const n = tokens.length;
  const models = new Array<string>(n);
  const inputs = new Array<number>(n);
  const outputs = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const t = tokens[i] as LlmTokens;
    if (t === null || typeof t !== 'object') invalid(`${at}.llmTokens[${i}]`, 'must be an object');
    // The usual case checked without building the field's name; str and uint name it when one fails.
    const { model, inputTokens, outputTokens } = t;
    models[i] = typeof model === 'string' && model.length <= 256 && !SURROGATE.test(model) ? model : str(model, at, `llmTokens[${i}].model`, 256);
    inputs[i] = Number.isSafeInteger(inputTokens) && inputTokens >= 0 ? inputTokens : uint(inputTokens, at, `llmTokens[${i}].inputTokens`);
    outputs[i] = Number.isSafeInteger(outputTokens) && outputTokens >= 0 ? outputTokens : uint(outputTokens, at, `llmTokens[${i}].outputTokens`);
  }
  const eventId = str(e.eventId, at, 'eventId', 256);
  if (eventId === '') invalid(`${at}.eventId`, 'must not be empty');
  const attribution = attributionValues(e, at);
  const later: unknown[] = [];
  for (const l of LATER_VALUES) {
    if (l.kind === 'amount') later.push(amounts[l.key]);
    else if (l.kind === 'quantity') later.push(decimal(quantities[l.key] ?? '', at, `metered.${l.key}`));
    else later.push(...attribution);
  }
  const out: unknown[] = [
    re(e.tenantId, at, 'tenantId', TENANT_RE, '1-64 letters, digits or ._-'),
    0,
    eventId,
    re(e.runId, at, 'runId', RUN_RE, '1-128 letters, digits or ._:-'),
    str(e.taskId, at, 'taskId', 256),
    str(e.taskType, at, 'taskType', 128),
    str(e.model, at, 'model', 256),
    str(e.environment, at, 'environment', 256),
    e.status,
    time(e.eventTime, at, 'eventTime'),
    time(e.ingestTime, at, 'ingestTime'),
  ];
  for (const k of FIRST_COMPONENTS) out.push(amounts[k]);
  out.push(
    total,
    gasUsed(e.gasUsed, at, 'gasUsed'),
    decimal(e.gasPriceGwei, at, 'gasPriceGwei'),
    decimal(e.nativeUsd, at, 'nativeUsd'),
    e.gasSource,
    uint(e.chainId, at, 'chainId'),
    str(e.txHash, at, 'txHash', 128),
    decimal(e.taskHours, at, 'taskHours'),
    decimal(e.computeHourUsd, at, 'computeHourUsd'),
    decimal(e.gbStored, at, 'gbStored'),
    decimal(e.storageGbMonthUsd, at, 'storageGbMonthUsd'),
    models,
    inputs,
    outputs,
  );
  for (const v of later) out.push(v);
  return out;
}

/** user_id, agent_id, skill_id, key_source of an event, validated ('' when absent). */
function attributionValues(e: CostEvent, at: string): string[] {
  const id = (v: unknown, name: string): string => (v === undefined ? '' : re(v, at, name, ATTRIBUTION_ID_RE, '1-128 letters, digits or ._:@-'));
  const keySource = e.keySource === undefined ? '' : str(e.keySource, at, 'keySource');
  if (keySource !== '' && !(KEY_SOURCES as readonly string[]).includes(keySource)) invalid(`${at}.keySource`, "must be 'platform' or 'byok'");
  return [id(e.userId, 'userId'), id(e.agentId, 'agentId'), id(e.skillId, 'skillId'), keySource];
}

/** Index of seq in the value array. */
export const SEQ_INDEX = 1;

/*
 * What an event is, as its producer sent it: every hashed value but seq, the ingest time and what Forge priced
 * (amounts, unit prices, the native token's price, what a receipt said). Two events of a tenant with one
 * event_id are the same event (a resend) when these agree, and conflict when they do not. Priced values stay
 * out: a resend priced a day later (another storage share, another native price, a receipt mined since)
 * is still the same event. The RLI amount is the producer's fee converted to micro-dollars, nothing priced;
 * reported gas is the producer's input, gas read from a receipt is not (only its tx hash and chain are).
 */
const PRICED: ReadonlySet<string> = new Set([
  'seq',
  'ingest_time',
  ...COMPONENTS.filter((c) => c !== 'rli').map(componentColumn),
  'total_micros',
  'gas_used',
  'gas_price_gwei',
  'native_usd',
  'gas_source',
  'compute_hour_usd',
  'gb_stored',
  'storage_gb_month_usd',
]);
const IDENTITY_INDEXES: readonly number[] = HASHED_COLUMNS.flatMap((c, i) => (PRICED.has(c) ? [] : [i]));

/**
 * The identity of an event's values (eventValues, or a stored row read with CANONICAL_SELECT and
 * normalised): equal strings for a resend of the same event, different ones for a changed event.
 */
export function eventIdentity(values: readonly unknown[]): string {
  const source = values[col('gas_source')];
  const gas = source === 'reported' ? [values[col('gas_used')], values[col('gas_price_gwei')]] : [source === 'none' ? 'none' : 'tx'];
  return JSON.stringify([...IDENTITY_INDEXES.map((i) => values[i]), ...gas]);
}

/** Canonical bytes of hashed values (all of HASHED_COLUMNS, or the leading ones of an older version). */
export function canonicalBytes(values: readonly unknown[], version: number = CANONICAL_VERSION): string {
  return canonicalFromBody(JSON.stringify(values.slice(0, hashedCount(version))), version);
}

/** Canonical bytes from JSON.stringify(values) (saves a second serialisation on the hot path). */
export function canonicalFromBody(body: string, version: number = CANONICAL_VERSION): string {
  return body.length > 2 ? `[${version},${body.slice(1)}` : `[${version}]`;
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
  const at = (name: string): unknown => v[col(name)];
  const models = at('llm_models') as string[];
  const inputs = at('llm_input_tokens') as number[];
  const outputs = at('llm_output_tokens') as number[];
  const amounts = Object.fromEntries(COMPONENTS.map((k) => [k, (at(componentColumn(k)) as number | undefined) ?? 0])) as Record<Component, number>;
  const metered: Partial<Record<Component, string>> = {};
  for (const m of METERED_COMPONENTS) {
    const q = at(quantityColumn(m.key)) as string | undefined;
    if (q) metered[m.key] = q;
  }
  return {
    tenantId: at('tenant_id') as string,
    seq: at('seq') as number,
    eventId: at('event_id') as string,
    runId: at('run_id') as string,
    taskId: at('task_id') as string,
    taskType: at('task_type') as string,
    model: at('model') as string,
    environment: at('environment') as string,
    status: at('status') as TaskStatus,
    eventTime: at('event_time') as number,
    ingestTime: at('ingest_time') as number,
    ...componentFields(amounts),
    totalMicros: at('total_micros') as number,
    gasUsed: at('gas_used') as string,
    gasPriceGwei: at('gas_price_gwei') as string,
    nativeUsd: at('native_usd') as string,
    gasSource: at('gas_source') as GasSource,
    chainId: at('chain_id') as number,
    txHash: at('tx_hash') as string,
    taskHours: at('task_hours') as string,
    computeHourUsd: at('compute_hour_usd') as string,
    gbStored: at('gb_stored') as string,
    storageGbMonthUsd: at('storage_gb_month_usd') as string,
    llmTokens: models.map((model, i) => ({ model, inputTokens: inputs[i] ?? 0, outputTokens: outputs[i] ?? 0 })),
    ...(Object.keys(metered).length > 0 ? { metered } : {}),
    ...attributionOf(at),
  };
}

/** The attribution fields of a stored row; empty columns (and rows older than them) give none. */
function attributionOf(at: (name: string) => unknown): Attribution {
  const out: Attribution = {};
  const s = (c: string): string => (at(c) as string | undefined) ?? '';
  if (s('user_id')) out.userId = s('user_id');
  if (s('agent_id')) out.agentId = s('agent_id');
  if (s('skill_id')) out.skillId = s('skill_id');
  if (s('key_source')) out.keySource = s('key_source') as KeySource;
  return out;
}

/**
 * The canonical bytes of a stored event (what its chain hash covers), for auditors who recompute hashes
 * outside the store: hash = chainHash(prev_hash, eventCanonicalBytes(event)).
 */
export function eventCanonicalBytes(e: CostEvent & { seq: number }, version: number = CANONICAL_VERSION): string {
  const values = eventValues(e, 'event');
  values[SEQ_INDEX] = e.seq;
  return canonicalBytes(values, version);
}

/** The values after the hashed ones in an insert row (INSERT_COLUMNS). */
export function linkValues(prevHash: string, hash: string): unknown[] {
  return [prevHash, hash, CANONICAL_VERSION];
}

/** The tail of an insert line after the hashed values: the links, the version and the writer's stream (INSERT_COLUMNS, stream). */
export function linkTail(prevHash: string, hash: string, stream: number): string {
  return `,"${prevHash}","${hash}",${CANONICAL_VERSION},${stream}]`;
}
