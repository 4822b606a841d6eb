import { z } from 'zod';
import { Dec, METERED_COMPONENTS, type Component, type LlmUsage } from '../rules/index.ts';
import { KEY_SOURCES, type Attribution, type TaskStatus } from '../store/index.ts';

/**
 * The `forge.task.finalized` event as producers send it (snake_case JSON, or the same keys in an OTLP
 * log record's body). Only cost *inputs* are accepted: Forge computes every amount itself. Keys starting
 * with `reported_` (a producer's own computed amounts) are tolerated and ignored; any other unknown key
 * is an error, so a misspelt input cannot silently price as zero.
 */
export const TASK_FINALIZED = 'forge.task.finalized';

/** The environment of a task with no compute of its own (a GenAI span's LLM call): priced at 0 per hour unless configured. */
export const NO_COMPUTE_ENVIRONMENT = 'gen_ai';

/** A validated, normalized event: what priceTaskEvent needs. Decimals are canonical strings. */
export interface TaskEvent {
  eventId: string;
  tenantId: string;
  runId: string;
  taskId: string;
  taskType: string;
  /** Primary model of the task, '' when none. */
  model: string;
  environment: string;
  status: TaskStatus;
  /** Epoch ms (UTC). */
  finalizedAt: number;
  /** C_rli_eval, USD (decimal string). */
  rliEvalUsd: string;
  gas: GasInput;
  /** H_task, hours (decimal string). */
  taskHours: string;
  llm: LlmUsage[];
  /** Quantities of the metered components (COMPONENT_SPECS `metered`), decimal strings; absent = none. */
  metered: Partial<Record<Component, string>>;
  /** Who the cost is attributed to (user, agent, skill, whose key paid); absent fields are not attributed. */
  attribution: Attribution;
}

export type GasInput =
  | { kind: 'none' }
  /** Priced from the chain: receipt gasUsed x effectiveGasPrice. from/nonce let Forge tell a replaced tx. */
  | { kind: 'tx'; txHash: `0x${string}`; chainId: number; from?: `0x${string}`; nonce?: number }
  /** G_used (gas units) and P_gas (gwei) as reported by the producer. */
  | { kind: 'reported'; gasUsed: string; gasPriceGwei: string; chainId: number };

/** Why one event was refused: `field` is the snake_case path inside the event ("gas.tx_hash", "llm[0].model"). */
export interface Rejection {
  code: 'FORGE_ERR_VALIDATION' | 'FORGE_ERR_FORBIDDEN_TENANT' | 'FORGE_ERR_EVENT_ID_CONFLICT';
  field: string;
  reason: string;
}

export type ParseOutcome = { ok: true; event: TaskEvent } | ({ ok: false } & Rejection);

export interface ParseOptions {
  /** Epoch ms; finalized_at may not be later than now + maxFutureSkewMs. */
  now: number;
  maxFutureSkewMs?: number;
}

// Bounds that make "enormous" concrete; the per-operation total is also capped by pricing limits.
const MAX_USD_INPUT = new Dec('1e6');
const MAX_HOURS = new Dec(24 * 366);
const MAX_GAS_USED = new Dec('18446744073709551615'); // UInt64, the column type
const MAX_GWEI = new Dec('1e9');
const MAX_TOKENS = 1e12;
const MIN_TIME = Date.UTC(2000, 0, 1);
const MAX_METERED = new Dec('1e9');

/** A non-negative decimal given as a JSON number or a decimal string, returned as a canonical string. */
function decimal(what: string, max: InstanceType<typeof Dec>, opts: { integer?: boolean } = {}) {
  return z.union([z.number(), z.string()], { error: `${what} must be a number or a decimal string` }).transform((v, ctx) => {
    if (typeof v === 'number' && !Number.isFinite(v)) {
      ctx.addIssue({ code: 'custom', message: `${what} must be a finite number, got ${String(v)}` });
      return z.NEVER;
    }
    const s = typeof v === 'number' ? String(v) : v.trim();
    // A decimal string is plain digits ("100000", not "1e5"); a JSON number may print with an exponent.
    if (!(typeof v === 'number' ? /^-?\d+(\.\d+)?([eE][-+]?\d+)?$/ : /^-?\d+(\.\d+)?$/).test(s)) {
      ctx.addIssue({ code: 'custom', message: `${what} must be a decimal number, got ${JSON.stringify(v)}` });
      return z.NEVER;
    }
    const d = new Dec(s);
    if (d.isNegative()) {
      ctx.addIssue({ code: 'custom', message: `${what} must not be negative, got ${s}` });
      return z.NEVER;
    }
    if (d.greaterThan(max)) {
      ctx.addIssue({ code: 'custom', message: `${what} is implausibly large: ${s} (at most ${max.toFixed()})` });
      return z.NEVER;
    }
    if (opts.integer && !d.isInteger()) {
      ctx.addIssue({ code: 'custom', message: `${what} must be a whole number, got ${s}` });
      return z.NEVER;
    }
    return d.toFixed();
  });
}

/** ISO 8601 with a time zone, or epoch milliseconds. */
const timestamp = z.union([z.number(), z.string()], { error: 'must be an ISO 8601 timestamp or epoch milliseconds' }).transform((v, ctx) => {
  let ms: number;
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v)) {
      ctx.addIssue({ code: 'custom', message: `must be whole epoch milliseconds, got ${String(v)}` });
      return z.NEVER;
    }
    ms = v;
  } else {
    if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/.test(v.trim())) {
      ctx.addIssue({ code: 'custom', message: `must be ISO 8601 with a time zone (e.g. 2026-03-02T09:00:00Z), got ${JSON.stringify(v)}` });
      return z.NEVER;
    }
    ms = Date.parse(v.trim());
    if (Number.isNaN(ms)) {
      ctx.addIssue({ code: 'custom', message: `is not a valid date: ${JSON.stringify(v)}` });
      return z.NEVER;
    }
  }
  if (ms < MIN_TIME || ms > 4102444800000) {
    ctx.addIssue({ code: 'custom', message: `is out of range (2000-01-01 .. 2100-01-01): ${String(v)}` });
    return z.NEVER;
  }
  return ms;
});

/** User, agent and skill ids: as billing spells a user id. */
const ATTRIBUTION_ID_RE = /^[A-Za-z0-9._:@-]{1,128}$/;
const id = (max: number, re: RegExp, what: string) => z.string({ error: 'must be a string' }).regex(re, `must be 1-${max} ${what}`);
const tokens = z
  .number({ error: 'must be a whole number of tokens' })
  .int('must be a whole number of tokens')
  .min(0, 'must not be negative')
  .max(MAX_TOKENS, 'is implausibly large');

const gasSchema = z
  .strictObject({
    tx_hash: z.string({ error: 'must be a string' }).regex(/^0x[0-9a-fA-F]{64}$/, 'must be a 0x-prefixed 32-byte hex transaction hash').optional(),
    chain_id: z.number({ error: 'must be a number' }).int('must be a whole number').positive('must be positive').max(2 ** 32).optional(),
    from: z.string({ error: 'must be a string' }).regex(/^0x[0-9a-fA-F]{40}$/, 'must be a 0x-prefixed 20-byte address').optional(),
    nonce: z.number({ error: 'must be a number' }).int('must be a whole number').min(0, 'must not be negative').max(2 ** 52).optional(),
    gas_used: decimal('gas_used', MAX_GAS_USED, { integer: true }).optional(),
    gas_price_gwei: decimal('gas_price_gwei', MAX_GWEI).optional(),
  })
  .superRefine((g, ctx) => {
    const tx = g.tx_hash !== undefined;
    const rep = g.gas_used !== undefined || g.gas_price_gwei !== undefined;
    if (tx && rep) ctx.addIssue({ code: 'custom', path: ['gas_used'], message: 'give either tx_hash (priced from the receipt) or gas_used + gas_price_gwei, not both' });
    else if (tx && g.chain_id === undefined) ctx.addIssue({ code: 'custom', path: ['chain_id'], message: 'is required with tx_hash' });
    else if (!tx && !rep) ctx.addIssue({ code: 'custom', path: ['tx_hash'], message: 'gas needs tx_hash + chain_id, or gas_used + gas_price_gwei' });
    else if (rep && g.gas_used === undefined) ctx.addIssue({ code: 'custom', path: ['gas_used'], message: 'is required with gas_price_gwei' });
    else if (rep && g.gas_price_gwei === undefined) ctx.addIssue({ code: 'custom', path: ['gas_price_gwei'], message: 'is required with gas_used' });
    if (!tx && (g.from !== undefined || g.nonce !== undefined)) ctx.addIssue({ code: 'custom', path: [g.from !== undefined ? 'from' : 'nonce'], message: 'only applies with tx_hash' });
    if ((g.from === undefined) !== (g.nonce === undefined)) ctx.addIssue({ code: 'custom', path: [g.from === undefined ? 'from' : 'nonce'], message: 'from and nonce go together' });
  });

/** One optional decimal field per metered component (e.g. `bandwidth_gb`). */
const meteredShape = Object.fromEntries(METERED_COMPONENTS.map((m) => [m.metered.field, decimal(m.metered.field, MAX_METERED).optional()]));

export const taskEventSchema = z
  .strictObject({
    ...meteredShape,
    event_id: id(128, /^[A-Za-z0-9._:-]{1,128}$/, 'letters, digits or ._:-'),
    tenant_id: id(64, /^[A-Za-z0-9._-]{1,64}$/, 'letters, digits or ._-'),
    run_id: id(128, /^[A-Za-z0-9._:-]{1,128}$/, 'letters, digits or ._:-'),
    task_id: id(128, /^[A-Za-z0-9._:/-]{1,128}$/, 'letters, digits or ._:/-'),
    task_type: id(64, /^[A-Za-z0-9._:/-]{1,64}$/, 'letters, digits or ._:/-'),
    model: z.string({ error: 'must be a string' }).max(128, 'must be at most 128 characters').optional(),
    environment: id(128, /^[A-Za-z0-9._:/@-]{1,128}$/, 'letters, digits or ._:/@-'),
    status: z.enum(['success', 'failed', 'retried'], { error: 'must be one of success, failed, retried' }),
    user_id: id(128, ATTRIBUTION_ID_RE, 'letters, digits or ._:@-').optional(),
    agent_id: id(128, ATTRIBUTION_ID_RE, 'letters, digits or ._:@-').optional(),
    skill_id: id(128, ATTRIBUTION_ID_RE, 'letters, digits or ._:@-').optional(),
    key_source: z.enum(KEY_SOURCES as [string, ...string[]], { error: 'must be one of platform, byok' }).optional(),
    finalized_at: timestamp,
    rli_eval_usd: decimal('rli_eval_usd', MAX_USD_INPUT),
    gas: gasSchema.optional(),
    task_hours: decimal('task_hours', MAX_HOURS).optional(),
    started_at: timestamp.optional(),
    ended_at: timestamp.optional(),
    llm: z
      .array(
        z.strictObject({
          model: z.string({ error: 'must be a string' }).min(1, 'must not be empty').max(128, 'must be at most 128 characters'),
          input_tokens: tokens,
          output_tokens: tokens,
          // Token classes of the OpenTelemetry GenAI conventions: parts of input (output) tokens, priced on their own.
          cache_read_input_tokens: tokens.optional(),
          cache_creation_input_tokens: tokens.optional(),
          reasoning_output_tokens: tokens.optional(),
        }),
        { error: 'must be a list of {model, input_tokens, output_tokens}' },
      )
      .max(64, 'at most 64 models per task')
      .optional(),
  })
  .superRefine((e, ctx) => {
    const span = e.started_at !== undefined || e.ended_at !== undefined;
    if (e.task_hours !== undefined && span) {
      ctx.addIssue({ code: 'custom', path: [e.started_at !== undefined ? 'started_at' : 'ended_at'], message: 'give task_hours or started_at + ended_at, not both' });
    } else if (e.task_hours === undefined && !span) {
      ctx.addIssue({ code: 'custom', path: ['task_hours'], message: 'is required (or give started_at + ended_at)' });
    } else if (span && e.started_at === undefined) {
      ctx.addIssue({ code: 'custom', path: ['started_at'], message: 'is required with ended_at' });
    } else if (span && e.ended_at === undefined) {
      ctx.addIssue({ code: 'custom', path: ['ended_at'], message: 'is required with started_at' });
    } else if (span && e.ended_at! < e.started_at!) {
      ctx.addIssue({ code: 'custom', path: ['ended_at'], message: 'must not be before started_at' });
    } else if (span && e.ended_at! - e.started_at! > MAX_HOURS.toNumber() * 3_600_000) {
      ctx.addIssue({ code: 'custom', path: ['ended_at'], message: 'task is implausibly long (more than a year)' });
    }
  });

function meteredOf(e: Record<string, unknown>): Partial<Record<Component, string>> {
  const out: Partial<Record<Component, string>> = {};
  for (const m of METERED_COMPONENTS) {
    const q = e[m.metered.field];
    if (typeof q === 'string' && !new Dec(q).isZero()) out[m.key] = q;
  }
  return out;
}

/** Joins a zod path as the event's field path: gas.tx_hash, llm[0].model. */
export function fieldPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += (out ? '.' : '') + String(p);
  }
  return out || '(event)';
}

function stripReported(input: unknown): unknown {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) return input;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(input)) if (!k.startsWith('reported_')) out[k] = v;
  return out;
}

/**
 * Validates one raw event (the JSON object a producer sent, or an OTLP body decoded to plain values).
 * Pure: the clock comes in as `now`. The first problem is reported, naming its field.
 *
 * The usual event (plain decimal strings, reported gas or none, task_hours) is checked by fastTaskEvent
 * below, which accepts exactly what the schema accepts and builds the same values; anything else (and
 * anything wrong) goes through the schema, so every rejection and its field and reason come from it.
 */
export function parseTaskEvent(input: unknown, opts: ParseOptions): ParseOutcome {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    return { ok: false, code: 'FORGE_ERR_VALIDATION', field: '(event)', reason: 'an event must be a JSON object' };
  }
  const fast = fastTaskEvent(input as Record<string, unknown>);
  return fast ? finish(fast, opts) : parseTaskEventWithSchema(input, opts);
}

/** parseTaskEvent through the schema alone: the definition the fast path is held to (tests compare them). */
export function parseTaskEventWithSchema(input: unknown, opts: ParseOptions): ParseOutcome {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) {
    return { ok: false, code: 'FORGE_ERR_VALIDATION', field: '(event)', reason: 'an event must be a JSON object' };
  }
  const r = taskEventSchema.safeParse(stripReported(input));
  if (!r.success) {
    // Report a missing required key before anything else: it is the most common producer mistake.
    const rank = (i: z.core.$ZodIssue): number => (i.code === 'unrecognized_keys' ? 2 : valueAt(input, i.path) === undefined ? 0 : 1);
    const issues = [...r.error.issues].sort((a, b) => rank(a) - rank(b));
    const issue = issues[0]!;
    if (issue.code === 'unrecognized_keys') {
      return { ok: false, code: 'FORGE_ERR_VALIDATION', field: fieldPath([...issue.path, issue.keys[0]!]), reason: `unknown field(s): ${issue.keys.join(', ')}` };
    }
    const missing = valueAt(input, issue.path) === undefined;
    return { ok: false, code: 'FORGE_ERR_VALIDATION', field: fieldPath(issue.path), reason: missing ? 'is required' : issue.message };
  }
  return finish(r.data, opts);
}

type ParsedEvent = z.output<typeof taskEventSchema>;

function finish(e: ParsedEvent, opts: ParseOptions): ParseOutcome {
  const skew = opts.maxFutureSkewMs ?? 300_000;
  if (e.finalized_at > opts.now + skew) {
    return { ok: false, code: 'FORGE_ERR_VALIDATION', field: 'finalized_at', reason: `is in the future (${new Date(e.finalized_at).toISOString()})` };
  }
  let gas: GasInput = { kind: 'none' };
  if (e.gas?.tx_hash !== undefined) {
    gas = { kind: 'tx', txHash: e.gas.tx_hash.toLowerCase() as `0x${string}`, chainId: e.gas.chain_id! };
    if (e.gas.from !== undefined && e.gas.nonce !== undefined) gas = { ...gas, from: e.gas.from as `0x${string}`, nonce: e.gas.nonce };
  } else if (e.gas) {
    gas = { kind: 'reported', gasUsed: e.gas.gas_used!, gasPriceGwei: e.gas.gas_price_gwei!, chainId: e.gas.chain_id ?? 0 };
  }
  const taskHours = e.task_hours ?? new Dec(e.ended_at! - e.started_at!).dividedBy(3_600_000).toFixed();
  return {
    ok: true,
    event: {
      eventId: e.event_id,
      tenantId: e.tenant_id,
      runId: e.run_id,
      taskId: e.task_id,
      taskType: e.task_type,
      model: e.model ?? '',
      environment: e.environment,
      status: e.status,
      finalizedAt: e.finalized_at,
      rliEvalUsd: e.rli_eval_usd,
      gas,
      taskHours,
      llm: (e.llm ?? []).map((u) => ({
        model: u.model,
        inputTokens: u.input_tokens,
        outputTokens: u.output_tokens,
        ...(u.cache_read_input_tokens ? { cacheReadTokens: u.cache_read_input_tokens } : {}),
        ...(u.cache_creation_input_tokens ? { cacheCreationTokens: u.cache_creation_input_tokens } : {}),
        ...(u.reasoning_output_tokens ? { reasoningTokens: u.reasoning_output_tokens } : {}),
      })),
      metered: meteredOf(e as Record<string, unknown>),
      attribution: {
        ...(e.user_id !== undefined ? { userId: e.user_id } : {}),
        ...(e.agent_id !== undefined ? { agentId: e.agent_id } : {}),
        ...(e.skill_id !== undefined ? { skillId: e.skill_id } : {}),
        ...(e.key_source !== undefined ? { keySource: e.key_source as Attribution['keySource'] } : {}),
      },
    },
  };
}

/*
 * The fast path: the schema above, written out for the usual event, ingested a thousand at a time. It
 * returns what the schema's parse returns, or undefined whenever it is not sure (a value to refuse, a form it
 * does not handle: tx_hash gas, started_at/ended_at, exponents, surrounding blanks), and the schema decides.
 */
const PLAIN = /^\d+(?:\.\d+)?$/;
const EVENT_ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;
const TENANT_ID_RE = /^[A-Za-z0-9._-]{1,64}$/;
const TASK_ID_RE = /^[A-Za-z0-9._:/-]{1,128}$/;
const TASK_TYPE_RE = /^[A-Za-z0-9._:/-]{1,64}$/;
const ENVIRONMENT_RE = /^[A-Za-z0-9._:/@-]{1,128}$/;
const ISO_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?(Z|[+-]\d{2}:\d{2})$/;
const STATUS_SET: ReadonlySet<unknown> = new Set(['success', 'failed', 'retried']);
const KEY_SOURCE_SET: ReadonlySet<unknown> = new Set(KEY_SOURCES);
const METERED_FIELDS: ReadonlyMap<string, string> = new Map(METERED_COMPONENTS.map((m) => [m.metered.field, MAX_METERED.toFixed()]));
const ATTRIBUTION_FIELDS: ReadonlySet<string> = new Set(['user_id', 'agent_id', 'skill_id']);

/** A plain non-negative decimal (string, or a number printing as one) as decimal.js's toFixed() writes it, at most `max`; else undefined. */
function fastDecimal(v: unknown, max: string, integer = false): string | undefined {
  let s: string;
  if (typeof v === 'string') s = v;
  else if (typeof v === 'number' && Number.isFinite(v)) s = String(v);
  else return undefined;
  if (s.length > 40 || !PLAIN.test(s)) return undefined;
  const dot = s.indexOf('.');
  let int = dot < 0 ? s : s.slice(0, dot);
  let frac = dot < 0 ? '' : s.slice(dot + 1);
  let i = 0;
  while (i < int.length - 1 && int.charCodeAt(i) === 48) i++;
  if (i > 0) int = int.slice(i);
  let j = frac.length;
  while (j > 0 && frac.charCodeAt(j - 1) === 48) j--;
  if (j < frac.length) frac = frac.slice(0, j);
  if (integer && frac !== '') return undefined;
  if (int.length > max.length || (int.length === max.length && (int > max || (int === max && frac !== '')))) return undefined;
  return frac === '' ? int : `${int}.${frac}`;
}

function fastTimestamp(v: unknown): number | undefined {
  let ms: number;
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v)) return undefined;
    ms = v;
  } else if (typeof v === 'string') {
    if (!ISO_RE.test(v)) return undefined;
    ms = Date.parse(v);
    if (Number.isNaN(ms)) return undefined;
  } else return undefined;
  return ms >= MIN_TIME && ms <= 4102444800000 ? ms : undefined;
}

function fastTokens(v: unknown): boolean {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 && v <= MAX_TOKENS;
}

function fastLlm(v: unknown): ParsedEvent['llm'] | undefined {
  if (!Array.isArray(v) || v.length > 64) return undefined;
  const out: NonNullable<ParsedEvent['llm']> = [];
  for (const u of v as unknown[]) {
    if (u === null || typeof u !== 'object' || Array.isArray(u)) return undefined;
    const r = u as Record<string, unknown>;
    for (const k in r) {
      if (!Object.hasOwn(r, k)) continue;
      if (k !== 'model' && k !== 'input_tokens' && k !== 'output_tokens' && k !== 'cache_read_input_tokens' && k !== 'cache_creation_input_tokens' && k !== 'reasoning_output_tokens') return undefined;
      if (k !== 'model' && !fastTokens(r[k])) return undefined;
    }
    const model = r.model;
    if (typeof model !== 'string' || model.length < 1 || model.length > 128 || !fastTokens(r.input_tokens) || !fastTokens(r.output_tokens)) return undefined;
    out.push(r as NonNullable<ParsedEvent['llm']>[number]);
  }
  return out;
}

function fastGas(v: unknown): ParsedEvent['gas'] | undefined {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return undefined;
  const g = v as Record<string, unknown>;
  let gasUsed: string | undefined;
  let gasPrice: string | undefined;
  let chainId: number | undefined;
  for (const k in g) {
    if (!Object.hasOwn(g, k)) continue;
    if (k === 'gas_used') gasUsed = fastDecimal(g[k], MAX_GAS_USED.toFixed(), true);
    else if (k === 'gas_price_gwei') gasPrice = fastDecimal(g[k], MAX_GWEI_TEXT);
    else if (k === 'chain_id') {
      const c = g[k];
      if (typeof c !== 'number' || !Number.isSafeInteger(c) || c <= 0 || c > 2 ** 32) return undefined;
      chainId = c;
    } else return undefined;
  }
  if (gasUsed === undefined || gasPrice === undefined) return undefined;
  return chainId === undefined ? { gas_used: gasUsed, gas_price_gwei: gasPrice } : { chain_id: chainId, gas_used: gasUsed, gas_price_gwei: gasPrice };
}

/** The text fields the fast check takes as they are, each with the pattern the schema holds it to. */
const TEXT_FIELDS: ReadonlyMap<string, RegExp> = new Map([
  ['event_id', EVENT_ID_RE],
  ['run_id', EVENT_ID_RE],
  ['tenant_id', TENANT_ID_RE],
  ['task_id', TASK_ID_RE],
  ['task_type', TASK_TYPE_RE],
  ['environment', ENVIRONMENT_RE],
  ...[...ATTRIBUTION_FIELDS].map((f): [string, RegExp] => [f, ATTRIBUTION_ID_RE]),
]);
const SCHEMA_KEYS: ReadonlySet<string> = new Set(Object.keys(taskEventSchema.shape));
const MAX_USD_TEXT = MAX_USD_INPUT.toFixed();
const MAX_HOURS_TEXT = MAX_HOURS.toFixed();
const MAX_GWEI_TEXT = MAX_GWEI.toFixed();

/** The schema's parse of a usual event, or undefined when the schema must decide (exported for its tests). */
export function fastTaskEvent(input: Record<string, unknown>): ParsedEvent | undefined {
  const out: Record<string, unknown> = {};
  for (const k in input) {
    if (!Object.hasOwn(input, k) || k.startsWith('reported_')) continue;
    const v = input[k];
    // The schema reads a key it knows with the value undefined as absent (a required one then fails, below).
    if (v === undefined) {
      if (SCHEMA_KEYS.has(k)) continue;
      return undefined;
    }
    const re = TEXT_FIELDS.get(k);
    if (re !== undefined) {
      if (typeof v !== 'string' || !re.test(v)) return undefined;
      out[k] = v;
      continue;
    }
    switch (k) {
      case 'model':
        if (typeof v !== 'string' || v.length > 128) return undefined;
        out[k] = v;
        break;
      case 'status':
      case 'key_source':
        if (!(k === 'status' ? STATUS_SET : KEY_SOURCE_SET).has(v)) return undefined;
        out[k] = v;
        break;
      case 'finalized_at': {
        const ms = fastTimestamp(v);
        if (ms === undefined) return undefined;
        out[k] = ms;
        break;
      }
      case 'rli_eval_usd':
      case 'task_hours': {
        const d = fastDecimal(v, k === 'rli_eval_usd' ? MAX_USD_TEXT : MAX_HOURS_TEXT);
        if (d === undefined) return undefined;
        out[k] = d;
        break;
      }
      case 'gas': {
        const g = fastGas(v);
        if (g === undefined) return undefined;
        out[k] = g;
        break;
      }
      case 'llm': {
        const l = fastLlm(v);
        if (l === undefined) return undefined;
        out[k] = l;
        break;
      }
      default: {
        const max = METERED_FIELDS.get(k);
        const d = max === undefined ? undefined : fastDecimal(v, max);
        if (d === undefined) return undefined;
        out[k] = d;
      }
    }
  }
  // Required: the schema's keys without a default; task_hours stands in for started_at + ended_at here.
  if (
    out.event_id === undefined ||
    out.tenant_id === undefined ||
    out.run_id === undefined ||
    out.task_id === undefined ||
    out.task_type === undefined ||
    out.environment === undefined ||
    out.status === undefined ||
    out.finalized_at === undefined ||
    out.rli_eval_usd === undefined ||
    out.task_hours === undefined
  ) {
    return undefined;
  }
  return out as ParsedEvent;
}

function valueAt(input: unknown, path: ReadonlyArray<PropertyKey>): unknown {
  let v = input;
  for (const p of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = Object.hasOwn(v, p) ? (v as Record<PropertyKey, unknown>)[p] : undefined;
  }
  return v;
}
