import type { Micros } from '../rules/index.ts';
import { BillingError } from './errors.ts';
import type { BillingClickHouse } from './credits/clickhouse-store.ts';
import type { BillableEvent } from './invoice.ts';

/** A window query: one team (tenant), optionally one user, [from, to) in epoch ms. */
export interface MeterQuery {
  tenantId: string;
  userId?: string;
  from: number;
  to: number;
}

export interface ExecutionCount {
  count: number;
  /** Epoch ms of the latest execution in the window; null when none. */
  lastAt: number | null;
}

/**
 * Where executions and LLM spend are counted. The source of truth is the event log (`cost_events`): one row
 * per finalized task = one execution. `platformLlmMicros` counts LLM spend on platform keys only (BYOK spend is
 * the user's own and does not count against the tier).
 */
export interface UsageSource {
  executions(q: MeterQuery): Promise<ExecutionCount>;
  platformLlmMicros(q: MeterQuery): Promise<Micros>;
  /** LLM spend per tenant in [from, to) over many tenants (finance report). */
  llmMicrosByTenant(tenantIds: readonly string[], from: number, to: number): Promise<Map<string, Micros>>;
}

/** One finalized execution as the in-memory source keeps it. */
export interface MeteredExecution {
  executionId: string;
  tenantId: string;
  userId: string;
  at: number;
  llmMicros: Micros;
  byok: boolean;
}

/** In-memory usage source: tests, and the embedded default until the event log carries user ids. */
export class MemoryUsageSource implements UsageSource {
  private readonly rows = new Map<string, MeteredExecution>();

  /** Records a finalized execution once per executionId. */
  record(e: MeteredExecution): boolean {
    if (this.rows.has(e.executionId)) return false;
    this.rows.set(e.executionId, { ...e });
    return true;
  }

  private match(q: MeterQuery): MeteredExecution[] {
    return [...this.rows.values()].filter(
      (r) => r.tenantId === q.tenantId && (q.userId === undefined || r.userId === q.userId) && r.at >= q.from && r.at < q.to,
    );
  }

  async executions(q: MeterQuery): Promise<ExecutionCount> {
    const m = this.match(q);
    return { count: m.length, lastAt: m.length ? Math.max(...m.map((r) => r.at)) : null };
  }

  async platformLlmMicros(q: MeterQuery): Promise<Micros> {
    return this.match(q).reduce((s, r) => s + (r.byok ? 0 : r.llmMicros), 0);
  }

  async llmMicrosByTenant(tenantIds: readonly string[], from: number, to: number): Promise<Map<string, Micros>> {
    const out = new Map<string, Micros>(tenantIds.map((t) => [t, 0]));
    for (const r of this.rows.values()) {
      if (out.has(r.tenantId) && r.at >= from && r.at < to) out.set(r.tenantId, (out.get(r.tenantId) ?? 0) + r.llmMicros);
    }
    return out;
  }
}

/** The part of the store's public face (store/index.ts `Store`) that metering reads. */
export interface StoreTotalsReader {
  totals(scope: { tenantId: string }, range: { from: number; to: number }): Promise<{ tasks: number; components: { llm: number } }>;
}

/**
 * Usage through the store's own queries (tenant filter, time bound, FINAL are the store's). The log has no
 * user id and no time of the latest event through this face: per-user queries throw (the service then counts
 * per-user spend in-process) and `lastAt` is null (the service throttles on its own admission times).
 */
export class StoreUsageSource implements UsageSource {
  constructor(private readonly store: StoreTotalsReader) {}

  async executions(q: MeterQuery): Promise<ExecutionCount> {
    noUser(q);
    const t = await this.store.totals({ tenantId: q.tenantId }, { from: q.from, to: q.to });
    return { count: t.tasks, lastAt: null };
  }

  async platformLlmMicros(q: MeterQuery): Promise<Micros> {
    noUser(q);
    return (await this.store.totals({ tenantId: q.tenantId }, { from: q.from, to: q.to })).components.llm;
  }

  async llmMicrosByTenant(tenantIds: readonly string[], from: number, to: number): Promise<Map<string, Micros>> {
    const out = new Map<string, Micros>();
    for (const t of tenantIds) out.set(t, (await this.store.totals({ tenantId: t }, { from, to })).components.llm);
    return out;
  }
}

function noUser(q: MeterQuery): void {
  if (q.userId !== undefined) {
    throw new BillingError('FORGE_ERR_BILLING_CONFIG', 'the event log has no user id; per-user metering needs the proposed user_id column', { field: 'userColumn' });
  }
}

const TABLE_RE = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$/;
const COL_RE = /^[a-z_][a-z0-9_]*$/;

export interface ClickHouseUsageOptions {
  /** `db.cost_events` (the store's event log table). */
  table: string;
  /**
   * Column holding the user id. cost_events has none yet (see the proposed additive `user_id` column);
   * until then per-user queries throw and per-user caps use the in-process counts.
   */
  userColumn?: string | null;
  /** Column telling BYOK spend apart ('byok' values are excluded from platform spend); null = all spend is platform. */
  keySourceColumn?: string | null;
}

/**
 * Usage from the event log. Every query filters by tenant and a time window and reads FINAL, so a replayed
 * event (ReplacingMergeTree by event_id) counts once.
 */
export class ClickHouseUsageSource implements UsageSource {
  private readonly table: string;
  private readonly userCol: string | null;
  private readonly keyCol: string | null;

  constructor(
    private readonly client: BillingClickHouse,
    opts: ClickHouseUsageOptions,
  ) {
    if (!TABLE_RE.test(opts.table)) throw new BillingError('FORGE_ERR_BILLING_CONFIG', `table "${opts.table}"`, { field: 'table' });
    for (const c of [opts.userColumn, opts.keySourceColumn]) {
      if (c != null && !COL_RE.test(c)) throw new BillingError('FORGE_ERR_BILLING_CONFIG', `column "${c}"`, { field: 'column' });
    }
    this.table = opts.table;
    this.userCol = opts.userColumn ?? null;
    this.keyCol = opts.keySourceColumn ?? null;
  }

  private where(q: MeterQuery): { sql: string; params: Record<string, unknown> } {
    const params: Record<string, unknown> = { tenant: q.tenantId, from: q.from, to: q.to };
    let sql = `tenant_id = {tenant:String} AND event_time >= fromUnixTimestamp64Milli({from:Int64}, 'UTC') AND event_time < fromUnixTimestamp64Milli({to:Int64}, 'UTC')`;
    if (q.userId !== undefined) {
      if (!this.userCol) {
        throw new BillingError('FORGE_ERR_BILLING_CONFIG', 'cost_events has no user column; per-user metering needs the proposed user_id column', { field: 'userColumn' });
      }
      sql += ` AND ${this.userCol} = {user:String}`;
      params.user = q.userId;
    }
    return { sql, params };
  }

  async executions(q: MeterQuery): Promise<ExecutionCount> {
    const w = this.where(q);
    const rs = await this.client.query({
      query: `SELECT toString(count()) AS n, toString(if(count() = 0, 0, toUnixTimestamp64Milli(max(event_time)))) AS last
              FROM ${this.table} FINAL WHERE ${w.sql}`,
      query_params: w.params,
      format: 'JSONEachRow',
    });
    const row = (await rs.json<{ n: string; last: string }>())[0];
    const n = Number(row?.n ?? 0);
    return { count: n, lastAt: n === 0 ? null : Number(row?.last) };
  }

  async platformLlmMicros(q: MeterQuery): Promise<Micros> {
    const w = this.where(q);
    const byok = this.keyCol ? ` AND ${this.keyCol} != 'byok'` : '';
    const rs = await this.client.query({
      query: `SELECT toString(sum(llm_micros)) AS s FROM ${this.table} FINAL WHERE ${w.sql}${byok}`,
      query_params: w.params,
      format: 'JSONEachRow',
    });
    return Number((await rs.json<{ s: string }>())[0]?.s ?? 0);
  }

  async llmMicrosByTenant(tenantIds: readonly string[], from: number, to: number): Promise<Map<string, Micros>> {
    const out = new Map<string, Micros>(tenantIds.map((t) => [t, 0]));
    if (tenantIds.length === 0) return out;
    const rs = await this.client.query({
      query: `SELECT tenant_id, toString(sum(llm_micros)) AS s FROM ${this.table} FINAL
              WHERE tenant_id IN {tenants:Array(String)}
                AND event_time >= fromUnixTimestamp64Milli({from:Int64}, 'UTC') AND event_time < fromUnixTimestamp64Milli({to:Int64}, 'UTC')
              GROUP BY tenant_id`,
      query_params: { tenants: [...tenantIds], from, to },
      format: 'JSONEachRow',
    });
    for (const r of await rs.json<{ tenant_id: string; s: string }>()) out.set(r.tenant_id, Number(r.s));
    return out;
  }

  /**
   * The tenant's finalized tasks in [from, to) with their attribution and LLM tokens per model, in time order:
   * what an invoice prices. Needs the attribution columns (store migration 0010).
   */
  async billableEvents(tenantId: string, from: number, to: number): Promise<BillableEvent[]> {
    const w = this.where({ tenantId, from, to });
    const rs = await this.client.query({
      query: `SELECT event_id, toString(toUnixTimestamp64Milli(event_time)) AS at, user_id, agent_id, skill_id, key_source,
                     llm_models, arrayMap(x -> toString(x), llm_input_tokens) AS inputs, arrayMap(x -> toString(x), llm_output_tokens) AS outputs
              FROM ${this.table} FINAL WHERE ${w.sql} ORDER BY event_time, event_id`,
      query_params: w.params,
      format: 'JSONEachRow',
    });
    const rows = await rs.json<{ event_id: string; at: string; user_id: string; agent_id: string; skill_id: string; key_source: string; llm_models: string[]; inputs: string[]; outputs: string[] }>();
    return rows.map((r) => ({
      eventId: r.event_id,
      at: Number(r.at),
      userId: r.user_id,
      agentId: r.agent_id,
      skillId: r.skill_id,
      keySource: r.key_source === 'byok' || r.key_source === 'platform' ? r.key_source : '',
      llm: r.llm_models.map((model, i) => ({ model, inputTokens: Number(r.inputs[i] ?? 0), outputTokens: Number(r.outputs[i] ?? 0) })),
    }));
  }
}
