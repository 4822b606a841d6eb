import { createHash, randomUUID } from 'node:crypto';
import type { ClickHouseClient } from '@clickhouse/client';
import { STORE_ERROR_CODES, StoreError } from './errors.ts';
import { recordHeads, recordedHeads, type Head } from './heads.ts';
import { chainHash, GENESIS_HASH } from './rows.ts';
import { checkTime, scopeSql, tenantOfScopeKey, type LogScope } from './scope.ts';

/** What happened to a guardrail. */
export type GuardrailEventKind =
  | 'state_change'
  | 'acknowledgement'
  | 'override'
  | 'budget_change'
  | 'reservation_expired'
  /** A UTC day on which the scope's own spend raised a hard-stop condition (details.day, YYYY-MM-DD). */
  | 'hard_day'
  | 'key_created'
  | 'key_revoked'
  /** A settle above what its reservation held, without a top-up. */
  | 'overrun'
  /** What the guard learned of a tenant's task type (actual / estimate ratios), kept across restarts. */
  | 'estimate_learned'
  /** Accounts (accounts/): a user signed up, verified the email, signed in or out, or failed to sign in. */
  | 'account_created'
  | 'email_verified'
  | 'sign_in'
  | 'sign_in_failed'
  | 'sign_out'
  /** A user's second factor was set up, turned on, turned off, or a recovery code was spent. */
  | 'two_factor_change'
  /** A cost anomaly (details.anomaly: cost_kill, model_fallback, ...): audited, alerted. */
  | 'anomaly'
  /** An incident's step (details.action: opened, acknowledged, resolved), opened by an EMERGENCY_STOP. */
  | 'incident'
  /** A tenant's intake paused (an execution spike; seq per tenant, details.spike) or resumed (an operator, a cool-down). */
  | 'intake_pause'
  | 'intake_resume';
export const GUARDRAIL_EVENT_KINDS: readonly GuardrailEventKind[] = ['state_change', 'acknowledgement', 'override', 'budget_change', 'reservation_expired', 'hard_day', 'key_created', 'key_revoked', 'overrun', 'estimate_learned', 'account_created', 'email_verified', 'sign_in', 'sign_in_failed', 'sign_out', 'two_factor_change', 'anomaly', 'incident', 'intake_pause', 'intake_resume'];
const KINDS: ReadonlySet<string> = new Set<GuardrailEventKind>(GUARDRAIL_EVENT_KINDS);

export interface GuardrailEventInput {
  /** Idempotency key: appending the same id twice keeps one row. Default: a random UUID. */
  eventId?: string;
  /** Epoch ms. */
  at: number;
  kind: GuardrailEventKind;
  /** Scope key: `global`, `tenant:<id>`, `run:<tenant>/<run>`. */
  scope: string;
  /** State after the event (NORMAL / WARNING / HARD_STOP / EMERGENCY_STOP), or '' when not a state. */
  state: string;
  previous?: string;
  /** The state change's seq (monotonic per scope); 0 when not applicable. */
  seq?: number;
  /** Who: 'forge' for automatic changes, an operator id otherwise. */
  actor?: string;
  reason: string;
  /** Anything else (condition hits, old/new budget), stored as JSON. */
  details?: unknown;
}

export interface GuardrailEventRow extends Required<Omit<GuardrailEventInput, 'details'>> {
  tenantId: string;
  details: unknown;
  recordedAt: number;
}

export interface AlertInput {
  alertId?: string;
  at: number;
  channel: string;
  severity: string;
  scope: string;
  dedupKey?: string;
  state?: string;
  /** e.g. 'sent', 'failed', 'suppressed', 'acknowledged'. */
  outcome: string;
  attempts?: number;
  message: string;
  details?: unknown;
}

export interface AlertRow extends Required<Omit<AlertInput, 'details'>> {
  tenantId: string;
  details: unknown;
  recordedAt: number;
}

export interface LogQuery {
  scope: LogScope;
  /** Inclusive, epoch ms. */
  from: number;
  /** Exclusive, epoch ms. */
  to: number;
  /** Only this exact scope key (e.g. 'run:t1/r1'); default: every scope of the tenant(s). */
  scopeKey?: string;
  limit?: number;
}

export type StopConditionCounts = Record<'WARNING' | 'HARD_STOP' | 'EMERGENCY_STOP', number>;

/**
 * The hash chain of guardrail_events: one chain per tenant stream (tenant_id '' holds the global scope),
 * positioned by `chain_seq`. Canonical bytes of a row = UTF-8 of JSON.stringify of
 *   ['guardrail_events/1', tenant_id, chain_seq, event_id, at_ms, kind, scope, state, previous, seq, actor,
 *    reason, details (the stored JSON text), recorded_at_ms]
 * and hash = sha256(prev_hash || canonical) as lowercase hex (prev_hash of chain_seq 1: 64 zeros). The leading
 * tag keeps these bytes apart from a cost_events row's. Rows with chain_seq 0 were written before the chain.
 */
export const GUARDRAIL_CANONICAL_TAG = 'guardrail_events/1';
export const GUARDRAIL_HASHED_COLUMNS = ['tenant_id', 'chain_seq', 'event_id', 'at', 'kind', 'scope', 'state', 'previous', 'seq', 'actor', 'reason', 'details', 'recorded_at'] as const;
export const GUARDRAIL_CANONICAL_SELECT = GUARDRAIL_HASHED_COLUMNS.map((c) => (c === 'at' || c === 'recorded_at' ? `toUnixTimestamp64Milli(${c})` : c)).join(', ');
const NUMERIC_COLUMNS: ReadonlySet<string> = new Set(['chain_seq', 'at', 'seq', 'recorded_at']);

export function guardrailCanonicalBytes(values: readonly unknown[]): string {
  return JSON.stringify([GUARDRAIL_CANONICAL_TAG, ...values]);
}

/** A row read with GUARDRAIL_CANONICAL_SELECT, with its numbers as numbers (a server quotes 64-bit ones). */
export function normaliseGuardrailRow(raw: unknown[]): unknown[] {
  const out = raw.slice();
  GUARDRAIL_HASHED_COLUMNS.forEach((c, i) => {
    if (NUMERIC_COLUMNS.has(c)) out[i] = Number(out[i]);
  });
  return out;
}

/** String.prototype.isWellFormed is ES2024; this is the same test. */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function bad(field: string, why: string): StoreError {
  return new StoreError(STORE_ERROR_CODES.INVALID, `${field} ${why}`, { field });
}

function str(v: unknown, field: string, max: number, allowEmpty = true): string {
  if (typeof v !== 'string') throw bad(field, 'must be a string');
  if (v.length > max) throw bad(field, `must be at most ${max} characters`);
  if (!allowEmpty && v === '') throw bad(field, 'must not be empty');
  if (LONE_SURROGATE.test(v)) throw bad(field, 'must be well-formed Unicode');
  return v;
}

function json(v: unknown, field: string): string {
  try {
    return JSON.stringify(v ?? {});
  } catch {
    throw bad(field, 'must be JSON-serialisable');
  }
}

/** guardrail_events and alert_log have no run_id column: a run scope narrows by its scope key. */
function logWhere(scope: LogScope): { where: string; params: Record<string, string> } {
  if (scope !== null && typeof scope === 'object' && 'tenantId' in scope && scope.runId !== undefined) {
    const s = scopeSql({ tenantId: scope.tenantId });
    return { where: `${s.where} AND scope = {runScope:String}`, params: { ...s.params, runScope: `run:${scope.tenantId}/${scope.runId}` } };
  }
  return scopeSql(scope);
}

function blockToken(ids: readonly string[]): string {
  return createHash('sha256').update(ids.join('\n')).digest('hex');
}

function scopeKey(v: unknown, field: string): { key: string; tenant: string } {
  const key = str(v, field, 256, false);
  const tenant = tenantOfScopeKey(key);
  if (tenant === undefined) throw bad(field, "must be 'global', 'tenant:<id>' or 'run:<tenant>/<run>'");
  return { key, tenant };
}

/** Appends and reads guardrail_events and alert_log (append-only, like the cost log). */

/** The filters both log reads share (tenant scope, time range, limit, exact scope key) and one of their own. */
function filtersOf(q: LogQuery, own?: { sql: string; name: string; value: unknown }): { s: ReturnType<typeof logWhere>; params: Record<string, unknown>; extra: string } {
  const s = logWhere(q.scope);
  const params: Record<string, unknown> = { ...s.params, from: checkTime(q.from, 'from'), to: checkTime(q.to, 'to'), limit: q.limit ?? 10_000 };
  let extra = '';
  if (q.scopeKey !== undefined) {
    extra += ' AND scope = {scopeKey:String}';
    params.scopeKey = q.scopeKey;
  }
  if (own) {
    extra += ` AND ${own.sql}`;
    params[own.name] = own.value;
  }
  return { s, params, extra };
}

export class GuardrailLog {
  readonly #client: ClickHouseClient;
  readonly #db: string;
  /** Per tenant stream: the end of the queue of appends advancing its chain (one at a time per stream). */
  readonly #tails = new Map<string, Promise<void>>();
  /** This process's stream of every tenant (its writer slot, store/heads.ts), asked at each append. */
  readonly #stream: () => number;

  constructor(client: ClickHouseClient, database: string, stream: () => number = () => 0) {
    this.#client = client;
    this.#db = database;
    this.#stream = stream;
  }

  /**
   * Validates all rows first (nothing stored on a bad one), then chains and appends them in one insert.
   * A row whose (tenant stream, event_id) is already stored, or earlier in the same call, is skipped: never
   * chained twice. Appends touching the same tenant run one after the other within this process, on the
   * process's own stream of it: another process appends on another stream (store/heads.ts).
   */
  async appendGuardrailEvents(events: readonly GuardrailEventInput[], now = Date.now()): Promise<void> {
    const rows = events.map((e, i) => {
      const f = `events[${i}]`;
      if (!KINDS.has(e?.kind)) throw bad(`${f}.kind`, `must be one of ${[...KINDS].join(', ')}`);
      const s = scopeKey(e.scope, `${f}.scope`);
      const seq = e.seq ?? 0;
      if (!Number.isSafeInteger(seq) || seq < 0) throw bad(`${f}.seq`, 'must be a non-negative integer');
      return {
        event_id: e.eventId === undefined ? randomUUID() : str(e.eventId, `${f}.eventId`, 256, false),
        at: checkTime(e.at, `${f}.at`),
        kind: e.kind,
        scope: s.key,
        tenant_id: s.tenant,
        state: str(e.state, `${f}.state`, 64),
        previous: str(e.previous ?? '', `${f}.previous`, 64),
        seq,
        actor: str(e.actor ?? 'forge', `${f}.actor`, 256),
        reason: str(e.reason, `${f}.reason`, 4096),
        details: json(e.details, `${f}.details`),
        recorded_at: now,
      };
    });
    if (rows.length === 0) return;
    const tenants = [...new Set(rows.map((r) => r.tenant_id))];
    // Take every stream's place in its queue at once (synchronously): no two appends ever wait on each other
    // in opposite orders.
    const before = tenants.map((t) => this.#tails.get(t));
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    for (const t of tenants) this.#tails.set(t, mine);
    try {
      await Promise.all(before);
      await this.#chainAndInsert(rows, tenants);
    } finally {
      release();
      for (const t of tenants) if (this.#tails.get(t) === mine) this.#tails.delete(t);
    }
  }

  async #chainAndInsert(rows: Array<Record<string, string | number>>, tenants: string[]): Promise<void> {
    const table = `${this.#db}.guardrail_events`;
    const key = (tenant: unknown, id: unknown) => `${String(tenant)}\u0000${String(id)}`;
    // Not bounded by time: a replayed event may carry another `at` (a hard day found again after a restart).
    // The stream filter keeps it to one tenant's (small) history.
    const rs = await this.#client.query({
      query: `SELECT tenant_id, event_id FROM ${table} WHERE tenant_id IN {tenants:Array(String)} AND event_id IN {ids:Array(String)}`,
      query_params: { tenants, ids: [...new Set(rows.map((r) => String(r.event_id)))] },
      format: 'JSONCompactEachRow',
    });
    const seen = new Set((await rs.json<[string, string]>()).map(([t, id]) => key(t, id)));
    const fresh = rows.filter((r) => {
      const k = key(r.tenant_id, r.event_id);
      if (seen.has(k)) return false;
      seen.add(k);
      return true;
    });
    if (fresh.length === 0) return;
    const stream = this.#stream();
    const heads = await this.#heads([...new Set(fresh.map((r) => String(r.tenant_id)))], stream);
    const lines = fresh.map((r) => {
      const head = heads.get(String(r.tenant_id)) as Head;
      const chained: Record<string, string | number> = { ...r, chain_seq: head.seq + 1 };
      const values = GUARDRAIL_HASHED_COLUMNS.map((c) => chained[c]);
      const hash = chainHash(head.hash, guardrailCanonicalBytes(values));
      const line = { ...chained, prev_hash: head.hash, hash, stream };
      head.seq += 1;
      head.hash = hash;
      return line;
    });
    // An explicit token per content: the embedded connection keeps settings of earlier statements (the
    // writer's insert_deduplication_token), which would otherwise drop this block as a "duplicate".
    await this.#client.insert({ table, values: lines, format: 'JSONEachRow', clickhouse_settings: { insert_deduplication_token: `${blockToken(lines.map((r) => r.hash))}:${stream}` } });
    await recordHeads(this.#client, this.#db, 'guardrail_events', heads, stream);
  }

  /**
   * The chain heads of these tenants' streams `stream`, read from the store on every append rather than cached
   * (guardrail events are few; a process on a slot another held before continues its stream). The head is
   * the newer of the log's highest chained row and the recorded head: rows past the recorded head (a writer
   * stopped before recording it) are continued, and a recorded head beyond the rows (newest rows removed) is
   * continued too, so the gap stays visible to verify.
   */
  async #heads(tenants: string[], stream: number): Promise<Map<string, Head>> {
    const rs = await this.#client.query({
      query: `SELECT tenant_id, max(chain_seq) AS s, argMax(hash, chain_seq) AS h FROM ${this.#db}.guardrail_events
WHERE tenant_id IN {tenants:Array(String)} AND stream = {stream:UInt16} AND chain_seq > 0 GROUP BY tenant_id`,
      query_params: { tenants, stream },
      format: 'JSONCompactEachRow',
    });
    const inLog = new Map<string, Head>();
    for (const [t, s, h] of await rs.json<[string, number | string, string]>()) inLog.set(t, { seq: Number(s), hash: h });
    const recorded = await recordedHeads(this.#client, this.#db, 'guardrail_events', tenants, stream);
    const out = new Map<string, Head>();
    for (const t of tenants) {
      const a = inLog.get(t);
      const b = recorded.get(t);
      const newest = a && b ? (b.seq > a.seq ? b : a) : (a ?? b);
      out.set(t, newest ? { ...newest } : { seq: 0, hash: GENESIS_HASH });
    }
    return out;
  }

  async guardrailEvents(q: LogQuery & { kinds?: GuardrailEventKind[] }): Promise<GuardrailEventRow[]> {
    const { s, params, extra } = filtersOf(q, q.kinds === undefined ? undefined : { sql: 'kind IN {kinds:Array(String)}', name: 'kinds', value: q.kinds });
    const rs = await this.#client.query({
      query: `SELECT event_id, toUnixTimestamp64Milli(at) AS at_ms, kind, scope, tenant_id, state, previous, seq, actor, reason, details,
  toUnixTimestamp64Milli(recorded_at) AS recorded_ms
FROM ${this.#db}.guardrail_events FINAL
WHERE ${s.where} AND at >= fromUnixTimestamp64Milli({from:Int64}, 'UTC') AND at < fromUnixTimestamp64Milli({to:Int64}, 'UTC')${extra}
ORDER BY at, seq, event_id
LIMIT {limit:UInt32}`,
      query_params: params,
      format: 'JSONEachRow',
    });
    return (await rs.json<Record<string, string | number>>()).map((r) => ({
      eventId: String(r.event_id),
      at: Number(r.at_ms),
      kind: r.kind as GuardrailEventKind,
      scope: String(r.scope),
      tenantId: String(r.tenant_id),
      state: String(r.state),
      previous: String(r.previous),
      seq: Number(r.seq),
      actor: String(r.actor),
      reason: String(r.reason),
      details: JSON.parse(String(r.details)) as unknown,
      recordedAt: Number(r.recorded_ms),
    }));
  }

  /**
   * Stop-condition counts (state changes into WARNING / HARD_STOP / EMERGENCY_STOP) since `sinceMs`,
   * over every scope of every tenant unless a scope is given.
   */
  async stopConditionCounts(sinceMs: number, opts: { scope?: LogScope; until?: number } = {}): Promise<StopConditionCounts> {
    const s = logWhere(opts.scope ?? { allTenants: true });
    const rs = await this.#client.query({
      query: `SELECT state, count() AS n FROM ${this.#db}.guardrail_events FINAL
WHERE ${s.where} AND kind = 'state_change'
  AND at >= fromUnixTimestamp64Milli({from:Int64}, 'UTC') AND at < fromUnixTimestamp64Milli({to:Int64}, 'UTC')
  AND state IN ('WARNING', 'HARD_STOP', 'EMERGENCY_STOP')
GROUP BY state`,
      query_params: { ...s.params, from: checkTime(sinceMs, 'sinceMs'), to: checkTime(opts.until ?? 10_413_791_999_999, 'until') },
      format: 'JSONEachRow',
    });
    const out: StopConditionCounts = { WARNING: 0, HARD_STOP: 0, EMERGENCY_STOP: 0 };
    for (const r of await rs.json<{ state: keyof StopConditionCounts; n: number | string }>()) out[r.state] = Number(r.n);
    return out;
  }

  async appendAlerts(alerts: readonly AlertInput[], now = Date.now()): Promise<void> {
    const rows = alerts.map((a, i) => {
      const f = `alerts[${i}]`;
      if (a === null || typeof a !== 'object') throw bad(f, 'must be an object');
      const s = scopeKey(a.scope, `${f}.scope`);
      const attempts = a.attempts ?? 1;
      if (!Number.isInteger(attempts) || attempts < 0 || attempts > 1_000_000) throw bad(`${f}.attempts`, 'must be a non-negative integer');
      return {
        alert_id: a.alertId === undefined ? randomUUID() : str(a.alertId, `${f}.alertId`, 256, false),
        at: checkTime(a.at, `${f}.at`),
        channel: str(a.channel, `${f}.channel`, 64, false),
        severity: str(a.severity, `${f}.severity`, 64, false),
        scope: s.key,
        tenant_id: s.tenant,
        dedup_key: str(a.dedupKey ?? '', `${f}.dedupKey`, 512),
        state: str(a.state ?? '', `${f}.state`, 64),
        outcome: str(a.outcome, `${f}.outcome`, 64, false),
        attempts,
        message: str(a.message, `${f}.message`, 16_384),
        details: json(a.details, `${f}.details`),
        recorded_at: now,
      };
    });
    if (rows.length === 0) return;
    await this.#client.insert({ table: `${this.#db}.alert_log`, values: rows, format: 'JSONEachRow', clickhouse_settings: { insert_deduplication_token: blockToken(rows.map((r) => r.alert_id)) } });
  }

  async alerts(q: LogQuery & { channel?: string }): Promise<AlertRow[]> {
    const { s, params, extra } = filtersOf(q, q.channel === undefined ? undefined : { sql: 'channel = {channel:String}', name: 'channel', value: q.channel });
    const rs = await this.#client.query({
      query: `SELECT alert_id, toUnixTimestamp64Milli(at) AS at_ms, channel, severity, scope, tenant_id, dedup_key, state, outcome, attempts,
  message, details, toUnixTimestamp64Milli(recorded_at) AS recorded_ms
FROM ${this.#db}.alert_log FINAL
WHERE ${s.where} AND at >= fromUnixTimestamp64Milli({from:Int64}, 'UTC') AND at < fromUnixTimestamp64Milli({to:Int64}, 'UTC')${extra}
ORDER BY at, alert_id
LIMIT {limit:UInt32}`,
      query_params: params,
      format: 'JSONEachRow',
    });
    return (await rs.json<Record<string, string | number>>()).map((r) => ({
      alertId: String(r.alert_id),
      at: Number(r.at_ms),
      channel: String(r.channel),
      severity: String(r.severity),
      scope: String(r.scope),
      tenantId: String(r.tenant_id),
      dedupKey: String(r.dedup_key),
      state: String(r.state),
      outcome: String(r.outcome),
      attempts: Number(r.attempts),
      message: String(r.message),
      details: JSON.parse(String(r.details)) as unknown,
      recordedAt: Number(r.recorded_ms),
    }));
  }
}
