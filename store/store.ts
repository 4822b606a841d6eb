import { randomUUID } from 'node:crypto';
import type { ClickHouseClient } from '@clickhouse/client';
import { ApiKeyTable, type ApiKeyRecord } from './api-keys.ts';
import type { CostEvent } from './cost-event.ts';
import { checkStream, listHeads, type ChainHead, type ChainLog } from './heads.ts';
import { verifyChain, verifyStreams, type StreamsVerifyResult, type VerifyOptions, type VerifyResult } from './chain.ts';
import { openClient, type ConnectionOptions } from './client.ts';
import { STORE_ERROR_CODES, StoreError } from './errors.ts';
import {
  GuardrailLog,
  type AlertInput,
  type AlertRow,
  type GuardrailEventInput,
  type GuardrailEventKind,
  type GuardrailEventRow,
  type LogQuery,
  type StopConditionCounts,
} from './guardrail-log.ts';
import { applyMigrations, type AppliedMigration } from './migrations.ts';
import { LogQueries, type RunDayTotals, type TimeRange } from './queries.ts';
import { CANONICAL_SELECT, eventValues, HASHED_COLUMNS, INSERT_COLUMNS, linkValues, normaliseRow, rowToEvent } from './rows.ts';
import { checkTime, scopeSql, type LogScope } from './scope.ts';
import { ControlSnapshotTable, type ControlSnapshot, type InvalidSnapshot, type LogSince, type Watermark } from './snapshots.ts';
import { StoreWriter, type BatchWriter, type WriterOptions } from './writer.ts';

export interface StoreOptions extends ConnectionOptions {
  /** Where background failures (flush loop) are reported. Default: console.error. */
  onError?: (e: unknown) => void;
  writer?: WriterOptions;
  /**
   * This process's stream of every tenant's logs (store/heads.ts): its writer slot, asked at each append, so a
   * slot claimed anew (guard/writer-slot.ts) takes effect at the next one. Default 0: the single writer.
   */
  stream?: () => number;
}

export interface StoredEvent extends CostEvent {
  seq: number;
  /** The writer's stream of the tenant the event is chained in (store/heads.ts): its chain is (tenant, stream), at seq. */
  stream: number;
}

/** The event log and its companions. All reads go through LogQueries' rules (tenant filter, time bound, FINAL). */
export interface Store extends LogQueries {
  readonly kind: 'embedded' | 'server';
  readonly database: string;
  /** The ClickHouse cluster the DDL runs ON CLUSTER (ReplicatedMergeTree + Distributed), or undefined. */
  readonly cluster: string | undefined;
  /** Embedded data directory or server origin. */
  readonly location: string;
  /** Migrations applied by this open (empty when the schema was current). */
  readonly migrated: AppliedMigration[];
  /** The batch writer: write() resolves once the events are durably committed. */
  readonly writer: BatchWriter;
  /** The underlying client, for parts with tables of their own (billing). Never for writes to the log. */
  readonly client: ClickHouseClient;
  /**
   * Benchmark baseline: a plain bulk insert of the same rows through the same client, into
   * `baseline_cost_events` (same schema and engine, no dedup, no chain). Never part of the log.
   */
  insertRaw(events: readonly CostEvent[]): Promise<void>;
  /** Stored events of the scope in [from, to), in event_time order (each event_id once). */
  listEvents(scope: LogScope, range: TimeRange, opts?: { limit?: number }): Promise<StoredEvent[]>;
  /** Walks one stream (default 0) of a tenant's hash chains in one log (default cost_events); reports the first broken link. */
  verify(opts: VerifyOptions): Promise<VerifyResult>;
  /** Walks every stream of a tenant's log (one per writer process that appended to it), each on its own. */
  verifyStreams(opts: Omit<VerifyOptions, 'stream'>): Promise<StreamsVerifyResult>;
  /** The recorded chain heads (log, tenant stream, seq, hash), for auditors to anchor elsewhere. */
  chainHeads(opts?: { log?: ChainLog; tenantId?: string }): Promise<ChainHead[]>;
  /** Appends a version of an API key (a new key, or a revocation with a higher version). */
  putApiKey(record: ApiKeyRecord): Promise<void>;
  /** Every API key at its newest version. */
  apiKeys(): Promise<ApiKeyRecord[]>;
  /** Changes whenever any API key is created or changed (a cheap check before reloading). */
  apiKeysFingerprint(): Promise<string>;
  /** The recorded chain heads of cost_events as a watermark (store/snapshots.ts): every row it names is committed. */
  costWatermark(): Promise<Map<string, number>>;
  /**
   * Totals per (tenant, run, UTC day) of the cost_events rows past `after` (at most `upTo`), each event key once,
   * none that the rows up to `after` hold: what a snapshot at `after` lacks. No FINAL; an empty `after` reads all.
   */
  runDayTotalsSince(after: Watermark, upTo?: Watermark): Promise<LogSince>;
  /** Per tenant stream of cost_events, the rows stored up to the watermark (copies counted). */
  costStreamRows(upTo: Watermark): Promise<Map<string, number>>;
  /** Writes a snapshot of the control state's spend (groups, then the header vouching for them). */
  writeControlSnapshot(s: { watermark: Watermark; streamRows: Watermark; groups: readonly RunDayTotals[]; takenAt: number }): Promise<ControlSnapshot>;
  /** The newest snapshot that checks out (of the newest `candidates`), and those that did not. */
  latestControlSnapshot(candidates?: number): Promise<{ snapshot: ControlSnapshot | undefined; invalid: InvalidSnapshot[] }>;
  appendGuardrailEvents(events: readonly GuardrailEventInput[]): Promise<void>;
  guardrailEvents(q: LogQuery & { kinds?: GuardrailEventKind[] }): Promise<GuardrailEventRow[]>;
  stopConditionCounts(sinceMs: number, opts?: { scope?: LogScope; until?: number }): Promise<StopConditionCounts>;
  appendAlerts(alerts: readonly AlertInput[]): Promise<void>;
  alerts(q: LogQuery & { channel?: string }): Promise<AlertRow[]>;
  /** Flushes the writer, then closes the connection (embedded: frees the data directory). */
  close(): Promise<void>;
}

class ForgeStore extends LogQueries implements Store {
  readonly kind: 'embedded' | 'server';
  readonly database: string;
  readonly cluster: string | undefined;
  readonly location: string;
  readonly migrated: AppliedMigration[];
  readonly writer: BatchWriter;
  readonly client: ClickHouseClient;
  readonly #client: ClickHouseClient;
  readonly #log: GuardrailLog;
  readonly #keys: ApiKeyTable;
  readonly #snapshots: ControlSnapshotTable;
  readonly #closeClient: () => Promise<void>;
  #baselineReady = false;
  #closed: Promise<void> | undefined;

  constructor(
    opened: ReturnType<typeof openClient>,
    migrated: AppliedMigration[],
    onError: (e: unknown) => void,
    writerOpts: WriterOptions | undefined,
    stream: () => number,
  ) {
    super(opened.client, opened.database);
    this.kind = opened.kind;
    this.database = opened.database;
    this.cluster = opened.cluster;
    this.location = opened.location;
    this.migrated = migrated;
    this.#client = opened.client;
    this.client = opened.client;
    this.#closeClient = () => opened.close();
    this.writer = new StoreWriter(opened.client, opened.database, onError, writerOpts, opened.kind, stream);
    this.#log = new GuardrailLog(opened.client, opened.database, stream);
    this.#keys = new ApiKeyTable(opened.client, opened.database);
    this.#snapshots = new ControlSnapshotTable(opened.client, opened.database);
  }

  async insertRaw(events: readonly CostEvent[]): Promise<void> {
    const rows = events.map((e, i) => [...eventValues(e, `events[${i}]`), ...linkValues('', '')]);
    if (rows.length === 0) return;
    if (!this.#baselineReady) {
      await this.#client.command({ query: `CREATE TABLE IF NOT EXISTS ${this.database}.baseline_cost_events AS ${this.database}.cost_events` });
      this.#baselineReady = true;
    }
    await this.#client.insert({
      table: `${this.database}.baseline_cost_events`,
      values: rows,
      format: 'JSONCompactEachRow',
      columns: INSERT_COLUMNS as unknown as [string, ...string[]],
      // Every insert names its own token: the embedded connection keeps settings from earlier statements.
      clickhouse_settings: { insert_deduplication_token: randomUUID() },
    });
  }

  async listEvents(scope: LogScope, range: TimeRange, opts: { limit?: number } = {}): Promise<StoredEvent[]> {
    const s = scopeSql(scope);
    const limit = opts.limit ?? 10_000;
    if (!Number.isInteger(limit) || limit < 1 || limit > 1_000_000) throw new StoreError(STORE_ERROR_CODES.INVALID, 'limit must be 1..1000000', { field: 'limit' });
    const rs = await this.#client.query({
      query: `SELECT ${CANONICAL_SELECT}, stream FROM ${this.database}.cost_events FINAL
WHERE ${s.where}
  AND event_time >= fromUnixTimestamp64Milli({from:Int64}, 'UTC') AND event_time < fromUnixTimestamp64Milli({to:Int64}, 'UTC')
ORDER BY event_time, tenant_id, seq
LIMIT {limit:UInt32}`,
      query_params: { ...s.params, from: checkTime(range?.from, 'range.from'), to: checkTime(range?.to, 'range.to'), limit },
      format: 'JSONCompactEachRow',
    });
    return (await rs.json<unknown[]>()).map((r) => ({ ...rowToEvent(normaliseRow(r)), stream: Number(r[HASHED_COLUMNS.length]) }));
  }

  verify(opts: VerifyOptions): Promise<VerifyResult> {
    return verifyChain(this.#client, this.database, opts);
  }

  verifyStreams(opts: Omit<VerifyOptions, 'stream'>): Promise<StreamsVerifyResult> {
    return verifyStreams(this.#client, this.database, opts);
  }

  chainHeads(opts?: { log?: ChainLog; tenantId?: string }): Promise<ChainHead[]> {
    return listHeads(this.#client, this.database, opts);
  }

  putApiKey(record: ApiKeyRecord): Promise<void> {
    return this.#keys.put(record);
  }

  apiKeys(): Promise<ApiKeyRecord[]> {
    return this.#keys.list();
  }

  apiKeysFingerprint(): Promise<string> {
    return this.#keys.fingerprint();
  }

  costWatermark(): Promise<Map<string, number>> {
    return this.#snapshots.recordedWatermark();
  }

  runDayTotalsSince(after: Watermark, upTo?: Watermark): Promise<LogSince> {
    return this.#snapshots.runDayTotalsSince(after, upTo);
  }

  costStreamRows(upTo: Watermark): Promise<Map<string, number>> {
    return this.#snapshots.streamRowsUpTo(upTo);
  }

  writeControlSnapshot(s: { watermark: Watermark; streamRows: Watermark; groups: readonly RunDayTotals[]; takenAt: number }): Promise<ControlSnapshot> {
    return this.#snapshots.write(s);
  }

  latestControlSnapshot(candidates?: number): Promise<{ snapshot: ControlSnapshot | undefined; invalid: InvalidSnapshot[] }> {
    return this.#snapshots.latest(candidates);
  }

  appendGuardrailEvents(events: readonly GuardrailEventInput[]): Promise<void> {
    return this.#log.appendGuardrailEvents(events);
  }

  guardrailEvents(q: LogQuery & { kinds?: GuardrailEventKind[] }): Promise<GuardrailEventRow[]> {
    return this.#log.guardrailEvents(q);
  }

  stopConditionCounts(sinceMs: number, opts?: { scope?: LogScope; until?: number }): Promise<StopConditionCounts> {
    return this.#log.stopConditionCounts(sinceMs, opts);
  }

  appendAlerts(alerts: readonly AlertInput[]): Promise<void> {
    return this.#log.appendAlerts(alerts);
  }

  alerts(q: LogQuery & { channel?: string }): Promise<AlertRow[]> {
    return this.#log.alerts(q);
  }

  close(): Promise<void> {
    this.#closed ??= (async () => {
      try {
        await this.writer.close();
      } finally {
        await this.#closeClient();
      }
    })();
    return this.#closed;
  }
}

/**
 * Opens the store: embedded engine under `dataDir` (default './data') when there is no `url`, a ClickHouse
 * server (or cluster, with `cluster`) otherwise. Same SQL both ways, all through @clickhouse/client.
 * Applies missing migrations before returning.
 */
export async function openStore(opts: StoreOptions = {}): Promise<Store> {
  const opened = openClient(opts);
  try {
    const migrated = await applyMigrations(opened.client, opened.cluster ? 'cluster' : 'single', {
      database: opened.database,
      ...(opened.cluster ? { cluster: opened.cluster } : {}),
    });
    const onError = opts.onError ?? ((e: unknown) => console.error('[forge store]', e));
    const of = opts.stream ?? (() => 0);
    // A slot out of range is refused at the append, before anything is chained on it.
    const stream = () => checkStream(of(), 'stream');
    return new ForgeStore(opened, migrated, onError, opts.writer, stream);
  } catch (e) {
    await opened.close().catch(() => undefined);
    throw e;
  }
}
