import { createHash } from 'node:crypto';
import type { ClickHouseClient } from '@clickhouse/client';
import type { CostEvent } from './cost-event.ts';
import { STORE_ERROR_CODES, StoreError } from './errors.ts';
import { recordHeads, recordedHeads } from './heads.ts';
import { CANONICAL_SELECT, CANONICAL_VERSION, chainHash, eventIdentity, eventValues, GENESIS_HASH, HASHED_COLUMNS, INSERT_COLUMNS, linkTail, normaliseRow, SEQ_INDEX } from './rows.ts';
import { isTransient, sleep } from './retry.ts';

/** What one write() call ended up as, once durable. */
export interface WriteReceipt {
  /** Events newly appended to the log by this call. */
  stored: number;
  /** Events whose (tenant, event_id) was already in the log or earlier in the same batch: counted once, not again. */
  duplicates: number;
  /** Per event, in the order written: true when this call appended it (only these may reach live totals). */
  fresh: boolean[];
  /**
   * Events refused because their tenant's event_id is taken by another event: stored under another event
   * time, or with another body (store/rows.ts eventIdentity). Nothing of them was stored; fresh is false.
   */
  conflicts: EventIdConflict[];
}

/** An event whose (tenant, event_id) the log holds as a different event. */
export interface EventIdConflict {
  /** Its index in the write. */
  index: number;
  eventId: string;
  /** The event time the log holds the id under, epoch ms. */
  storedEventTime: number;
}

/** Buffers events, flushes in batches, resolves each write once its events are durably committed. */
export interface BatchWriter {
  /**
   * Validates the events (StoreError INVALID naming the field; nothing stored), waits for buffer space
   * (StoreError BACKPRESSURE after `backpressureTimeoutMs`), and resolves once every event is committed
   * (or was already in the log). Rejects with WRITE_FAILED when a flush fails after its retries; replaying
   * the same events is then safe.
   */
  write(events: readonly CostEvent[]): Promise<WriteReceipt>;
  /** Flushes everything buffered now; resolves when it is committed (or failed). */
  flush(): Promise<void>;
  /** Flushes, then refuses further writes. */
  close(): Promise<void>;
  stats(): WriterStats;
}

export interface WriterStats {
  /** Events waiting in the buffer. */
  queued: number;
  /** Events in the flush under way. */
  inFlight: number;
  /** write() calls waiting for buffer space. */
  waiting: number;
  flushes: number;
  retries: number;
  stored: number;
  duplicates: number;
  conflicts: number;
  failedFlushes: number;
}

export interface WriterOptions {
  /** Flush when this many events are buffered (default 10 000). */
  maxBatchRows?: number;
  /** Flush buffered events at the latest this long after the first arrived, ms (default 1000). */
  flushIntervalMs?: number;
  /** Buffered + in-flight events above which write() waits (default 100 000). */
  maxBufferedEvents?: number;
  /** How long write() waits for buffer space before BACKPRESSURE, ms (default 10 000). */
  backpressureTimeoutMs?: number;
  /** Retries of a failed flush on transient errors (default 5), with exponential backoff and jitter. */
  maxRetries?: number;
  /** First backoff, ms (default 100); doubles per retry up to retryMaxMs (default 5000). */
  retryBaseMs?: number;
  retryMaxMs?: number;
}

/**
 * One event as the writer keeps it from write() to its commit: its key and its values serialised once, in
 * write() (which runs while the engine works on an earlier flush), around the seq that only the commit
 * knows. The insert line is `${pre}${seq}${post}` + the links; the canonical bytes hashed are the same
 * array with the version in front: `${canonicalPre}${seq}${post}]` (store/rows.ts).
 */
interface Row {
  tenant: string;
  eventId: string;
  eventTime: number;
  /** `${tenant}\u0000${eventId}`: what exactly-once is about. */
  key: string;
  pre: string;
  canonicalPre: string;
  /** The values after seq, without the closing bracket. */
  post: string;
}

/** The insert's columns: the row's, then the writer's stream (store/heads.ts), which is not hashed. */
const WRITE_COLUMNS = [...INSERT_COLUMNS, 'stream'] as unknown as [string, ...string[]];
const TENANT_INDEX = HASHED_COLUMNS.indexOf('tenant_id');
const EVENT_ID_INDEX = HASHED_COLUMNS.indexOf('event_id');
const EVENT_TIME_INDEX = HASHED_COLUMNS.indexOf('event_time');
if (TENANT_INDEX !== 0 || SEQ_INDEX !== 1) throw new Error('the writer cuts the row after tenant_id, seq: the canonical order changed');

function encodeRow(values: unknown[]): Row {
  const tenant = values[TENANT_INDEX] as string;
  const eventId = values[EVENT_ID_INDEX] as string;
  // seq is 0 here, right after the tenant: the body reads ["<tenant>",0,... and is cut around that 0.
  const body = JSON.stringify(values);
  const cut = JSON.stringify(tenant).length + 2;
  const pre = body.slice(0, cut);
  return {
    tenant,
    eventId,
    eventTime: values[EVENT_TIME_INDEX] as number,
    key: `${tenant}\u0000${eventId}`,
    pre,
    canonicalPre: `[${CANONICAL_VERSION},${pre.slice(1)}`,
    post: body.slice(cut + 1, -1),
  };
}

/** Per row, false for a repeat of an earlier row's key in the same rows. */
function firstOccurrences(rows: readonly Row[]): boolean[] {
  const fresh = new Array<boolean>(rows.length).fill(true);
  const seen = new Set<string>();
  for (let i = 0; i < rows.length; i++) {
    const k = (rows[i] as Row).key;
    if (seen.has(k)) fresh[i] = false;
    else seen.add(k);
  }
  return fresh;
}

/** The identity of a row's event (store/rows.ts eventIdentity), from its encoded values. */
function rowIdentity(r: Row): string {
  return eventIdentity(JSON.parse(`${r.pre}0${r.post}]`) as unknown[]);
}

/**
 * Per row, when it is refused, the event time its id is held under: a first occurrence the log holds as
 * another event, or a repeat in the batch that is another event than its first occurrence. A repeat of a
 * refused first occurrence is refused unless it has the stored event's time (then it is taken for that
 * event: a duplicate, compared by time only; two writes with one id meet in a batch only when flushed
 * together). Repeats are rare: their identities are worked out only for them.
 */
function conflictsOf(rows: readonly Row[], fresh: readonly boolean[], logged: ReadonlyMap<string, number>): Array<number | undefined> {
  const out = new Array<number | undefined>(rows.length);
  let firsts: Map<string, Row> | undefined;
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i] as Row;
    const t = logged.get(r.key);
    if (t !== undefined) {
      if (fresh[i] || r.eventTime !== t) out[i] = t;
      continue;
    }
    if (fresh[i]) continue;
    if (!firsts) {
      firsts = new Map();
      for (let j = 0; j < rows.length; j++) if (fresh[j]) firsts.set((rows[j] as Row).key, rows[j] as Row);
    }
    const first = firsts.get(r.key) as Row;
    if (first.eventTime !== r.eventTime || rowIdentity(first) !== rowIdentity(r)) out[i] = first.eventTime;
  }
  return out;
}

/** Code units from which UTF-16 order (JavaScript's) and UTF-8 byte order (the engine's) can differ. */
const NON_BMP_ORDER = /[\uD800-\uFFFF]/;

/**
 * The tenants and the lowest and highest event id of these keys, in the engine's (byte) order; undefined when
 * an id holds characters whose order JavaScript compares differently.
 */
function idSpan(keys: Iterable<string>): { tenants: string[]; lo: string; hi: string } | undefined {
  const tenants = new Set<string>();
  let lo: string | undefined;
  let hi: string | undefined;
  for (const k of keys) {
    const cut = k.indexOf('\u0000');
    const id = k.slice(cut + 1);
    if (NON_BMP_ORDER.test(id)) return undefined;
    tenants.add(k.slice(0, cut));
    if (lo === undefined || id < lo) lo = id;
    if (hi === undefined || id > hi) hi = id;
  }
  return lo === undefined || hi === undefined ? undefined : { tenants: [...tenants], lo, hi };
}

/** A flush's rows, and once sent ahead (#prefetchNext), its existence check. */
interface Batch {
  entries: Entry[];
  rows: Row[];
  checked?: Promise<Checked | undefined>;
  /** Its ids' insert into the id index, sent once the check answered: settles to the error when it failed. */
  ids?: Promise<unknown>;
}

/** An existence check's answer: which rows are first of their key in the batch, and what the log holds of them. */
interface Checked {
  fresh: boolean[];
  existing: Existing;
}

/** What the log holds of a batch's keys (`${tenant}\u0000${eventId}`). */
interface Existing {
  /** Keys stored with the row's event time and body: a resend (or an earlier attempt of this commit). */
  stored: Set<string>;
  /** Keys stored as another event (another event time or body): the stored row's event time, epoch ms. */
  conflicts: Map<string, number>;
}

/** A commit's answer per row: appended (fresh), and when refused, the event time the log holds its id under. */
interface Committed {
  fresh: boolean[];
  conflict: Array<number | undefined>;
}

interface Entry {
  rows: Row[];
  resolve: (r: WriteReceipt) => void;
  reject: (e: unknown) => void;
}

interface Waiter {
  entry: Entry;
  timer: NodeJS.Timeout;
}

interface Head {
  seq: number;
  hash: string;
}

/**
 * Existence checks go in chunks: against a server the parameters travel in the URL (keep them well under
 * its limit); in process there is no such limit.
 */
const CHECK_CHUNK_SERVER = 2000;
const CHECK_CHUNK_EMBEDDED = 50_000;
/**
 * The range check reads the stored rows in the batch's time span when there are at most this many per row
 * checked (and at least RANGE_CHECK_MIN): reading a row back costs a fraction of looking one up by key.
 */
const RANGE_CHECK_FACTOR = 4;
/** Writes larger than this are encoded this many events at a time, yielding to the event loop in between. */
const ENCODE_SLICE = 1000;
const RANGE_CHECK_MIN = 2000;

export class StoreWriter implements BatchWriter {
  readonly #client: ClickHouseClient;
  readonly #db: string;
  readonly #table: string;
  readonly #idTable: string;
  readonly #onError: (e: unknown) => void;
  readonly #maxBatch: number;
  readonly #interval: number;
  readonly #maxBuffered: number;
  readonly #bpTimeout: number;
  readonly #maxRetries: number;
  readonly #retryBase: number;
  readonly #retryMax: number;
  readonly #checkChunk: number;

  #queue: Entry[] = [];
  #queued = 0;
  #inFlight = 0;
  #waiters: Waiter[] = [];
  #flushing: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** The batch after the one flushing, taken with its existence check under way (#prefetchNext). */
  #next: Batch | undefined;
  /** Settles once the writes being encoded a slice at a time (#writeInSlices) are in the queue. */
  #encoding: Promise<void> | undefined;
  /** Set by the interval timer, flush() and close(): drain the whole queue, not only full batches. */
  #drain = false;
  #closed = false;
  /** Chain head per tenant on #headsStream as last committed by this writer; dropped after a failure (re-read). */
  readonly #heads = new Map<string, Head>();
  /** This process's stream of every tenant (its writer slot, store/heads.ts), asked at each commit. */
  readonly #stream: () => number;
  /** The stream #heads are of: when the slot changes (a lease lost and claimed anew) they are read again. */
  #headsStream = -1;
  readonly #stats = { flushes: 0, retries: 0, stored: 0, duplicates: 0, conflicts: 0, failedFlushes: 0 };

  constructor(
    client: ClickHouseClient,
    database: string,
    onError: (e: unknown) => void,
    opts: WriterOptions = {},
    transport: 'embedded' | 'server' = 'server',
    stream: () => number = () => 0,
  ) {
    this.#client = client;
    this.#stream = stream;
    this.#checkChunk = transport === 'embedded' ? CHECK_CHUNK_EMBEDDED : CHECK_CHUNK_SERVER;
    this.#db = database;
    this.#table = `${database}.cost_events`;
    this.#idTable = `${database}.cost_event_ids`;
    this.#onError = onError;
    this.#maxBatch = positive(opts.maxBatchRows ?? 10_000, 'maxBatchRows');
    this.#interval = positive(opts.flushIntervalMs ?? 1000, 'flushIntervalMs');
    this.#maxBuffered = positive(opts.maxBufferedEvents ?? 100_000, 'maxBufferedEvents');
    this.#bpTimeout = positive(opts.backpressureTimeoutMs ?? 10_000, 'backpressureTimeoutMs');
    this.#maxRetries = nonNegative(opts.maxRetries ?? 5, 'maxRetries');
    this.#retryBase = positive(opts.retryBaseMs ?? 100, 'retryBaseMs');
    this.#retryMax = positive(opts.retryMaxMs ?? 5000, 'retryMaxMs');
  }

  write(events: readonly CostEvent[]): Promise<WriteReceipt> {
    if (this.#closed) return Promise.reject(new StoreError(STORE_ERROR_CODES.CLOSED, 'the store writer is closed'));
    if (!Array.isArray(events)) return Promise.reject(new StoreError(STORE_ERROR_CODES.INVALID, 'events must be an array', { field: 'events' }));
    if (events.length > ENCODE_SLICE || this.#encoding) return this.#writeInSlices(events);
    let rows: Row[];
    try {
      rows = events.map((e, i) => encodeRow(eventValues(e, `events[${i}]`)));
    } catch (e) {
      return Promise.reject(e);
    }
    return this.#submit(rows);
  }

  /**
   * A large write is checked and encoded a slice at a time, letting the event loop run in between: the
   * flush under way then hands the engine its next statement without waiting for the whole write to be
   * encoded (the engine would sit idle meanwhile). Writes that come while one is being encoded follow it,
   * so events still reach the queue in the order they were written.
   */
  #writeInSlices(events: readonly CostEvent[]): Promise<WriteReceipt> {
    const before = this.#encoding;
    const encoded = (async (): Promise<Row[]> => {
      if (before) await before;
      const rows = new Array<Row>(events.length);
      for (let off = 0; off < events.length; off += ENCODE_SLICE) {
        if (off > 0) await new Promise((r) => setImmediate(r));
        const end = Math.min(events.length, off + ENCODE_SLICE);
        for (let i = off; i < end; i++) rows[i] = encodeRow(eventValues(events[i] as CostEvent, `events[${i}]`));
      }
      return rows;
    })();
    const settled = encoded.then(
      () => undefined,
      () => undefined,
    );
    this.#encoding = settled;
    void settled.then(() => {
      if (this.#encoding === settled) this.#encoding = undefined;
    });
    return encoded.then((rows) => this.#submit(rows));
  }

  #submit(rows: Row[]): Promise<WriteReceipt> {
    if (rows.length === 0) return Promise.resolve({ stored: 0, duplicates: 0, fresh: [], conflicts: [] });
    return new Promise<WriteReceipt>((resolve, reject) => {
      const entry: Entry = { rows, resolve, reject };
      if (this.#waiters.length === 0 && this.#fits(rows.length)) {
        this.#enqueue(entry);
        return;
      }
      const waiter: Waiter = {
        entry,
        timer: setTimeout(() => {
          const i = this.#waiters.indexOf(waiter);
          if (i >= 0) this.#waiters.splice(i, 1);
          reject(
            new StoreError(
              STORE_ERROR_CODES.BACKPRESSURE,
              `the store writer buffer stayed full (${this.#queued + this.#inFlight} of ${this.#maxBuffered} events) for ${this.#bpTimeout} ms`,
            ),
          );
        }, this.#bpTimeout),
      };
      this.#waiters.push(waiter);
    });
  }

  async flush(): Promise<void> {
    while (this.#queue.length > 0 || this.#flushing || (this.#closed && this.#waiters.length > 0)) {
      this.#drain = true;
      this.#kick();
      await this.#flushing;
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    // Writes accepted before close and still being encoded are flushed with the rest.
    while (this.#encoding) await this.#encoding;
    await this.flush();
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  stats(): WriterStats {
    return { queued: this.#queued, inFlight: this.#inFlight, waiting: this.#waiters.length, ...this.#stats };
  }

  #fits(n: number): boolean {
    const used = this.#queued + this.#inFlight;
    // One call larger than the whole buffer still goes through, alone.
    return used + n <= this.#maxBuffered || used === 0;
  }

  #enqueue(entry: Entry): void {
    this.#queue.push(entry);
    this.#queued += entry.rows.length;
    if (this.#queued >= this.#maxBatch) this.#kick();
    else this.#armTimer();
  }

  /** The interval flush: armed when rows wait for a batch that is not full yet. */
  #armTimer(): void {
    if (this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#drain = true;
      this.#kick();
    }, this.#interval);
  }

  #admitWaiters(): void {
    while (this.#waiters.length > 0) {
      const w = this.#waiters[0] as Waiter;
      if (!this.#fits(w.entry.rows.length)) break;
      this.#waiters.shift();
      clearTimeout(w.timer);
      this.#enqueue(w.entry);
    }
  }

  /** Starts the flush loop unless one is running: never two flushes at once. */
  #kick(): void {
    if (this.#flushing) return;
    this.#flushing = this.#loop()
      .catch((e: unknown) => this.#onError(e))
      .finally(() => {
        this.#flushing = undefined;
        if (this.#queue.length === 0) return;
        if (this.#drain || this.#queued >= this.#maxBatch) this.#kick();
        else this.#armTimer();
      });
  }

  async #loop(): Promise<void> {
    for (let next = this.#takeBatch(); next; next = this.#next ?? this.#takeBatch()) {
      this.#next = undefined;
      try {
        await this.#flushBatch(next);
      } finally {
        this.#inFlight -= next.rows.length;
        this.#admitWaiters();
      }
    }
    if (this.#queue.length === 0) {
      this.#drain = false;
      if (this.#timer) clearTimeout(this.#timer);
      this.#timer = undefined;
    }
  }

  /** The next batch to flush, if the queue holds one that is due: taken off the queue, counted in flight. */
  #takeBatch(): Batch | undefined {
    if (this.#queue.length === 0 || !(this.#drain || this.#queued >= this.#maxBatch)) return undefined;
    const entries: Entry[] = [];
    let n = 0;
    while (this.#queue.length > 0 && (n === 0 || n + (this.#queue[0] as Entry).rows.length <= this.#maxBatch)) {
      const e = this.#queue.shift() as Entry;
      entries.push(e);
      n += e.rows.length;
    }
    this.#queued -= n;
    this.#inFlight += n;
    return { entries, rows: entries.flatMap((e) => e.rows) };
  }

  /**
   * Called once a flush's rows are in the log: the next batch (if one is due) is taken now and its existence
   * check sent to the engine at once, so the engine runs it right behind the head record instead of waiting
   * for the main thread to resolve this flush's writes first. The check sees this flush's rows (it starts
   * after their insert returned); a retry of the next batch checks again.
   */
  #prefetchNext(): void {
    if (this.#next) return;
    const next = this.#takeBatch();
    if (!next) return;
    const fresh = firstOccurrences(next.rows);
    // The ids' insert follows the check (which then reads only what was stored before this batch), in the
    // time the main thread takes to resolve this flush's writes.
    let ids: Promise<unknown> | undefined;
    next.checked = this.#existing(next.rows, fresh).then(
      (existing) => {
        ids = this.#insertIds(next.rows, fresh);
        return { fresh, existing };
      },
      () => undefined,
    );
    next.ids = next.checked.then(() => ids);
    this.#next = next;
  }

  async #flushBatch(next: Batch): Promise<void> {
    const { entries: batch, rows } = next;
    let committed: Committed;
    try {
      committed = await this.#commitWithRetry(rows, next.checked, next.ids);
    } catch (e) {
      this.#stats.failedFlushes++;
      const err =
        e instanceof StoreError
          ? e
          : new StoreError(STORE_ERROR_CODES.WRITE_FAILED, `flushing ${rows.length} events failed: ${(e as Error).message}`, { cause: e });
      for (const entry of batch) entry.reject(err);
      this.#onError(err);
      return;
    }
    this.#stats.flushes++;
    let i = 0;
    for (const entry of batch) {
      const own = committed.fresh.slice(i, i + entry.rows.length);
      const conflicts: EventIdConflict[] = [];
      for (let j = 0; j < entry.rows.length; j++) {
        const t = committed.conflict[i + j];
        if (t !== undefined) conflicts.push({ index: j, eventId: (entry.rows[j] as Row).eventId, storedEventTime: t });
      }
      i += entry.rows.length;
      let stored = 0;
      for (const f of own) if (f) stored++;
      const duplicates = entry.rows.length - stored - conflicts.length;
      this.#stats.stored += stored;
      this.#stats.duplicates += duplicates;
      this.#stats.conflicts += conflicts.length;
      entry.resolve({ stored, duplicates, fresh: own, conflicts });
    }
  }

  /**
   * Commits the rows idempotently, retrying transient failures. A retry starts over: it re-reads which
   * events are already stored and the chain heads, so after an ambiguous failure (the insert landed but the
   * reply was lost) nothing is chained or counted twice; and an identical retry carries the same
   * insert_deduplication_token, so an insert that lands late is dropped by the engine.
   */
  async #commitWithRetry(rows: Row[], checked?: Promise<Checked | undefined>, ids?: Promise<unknown>): Promise<Committed> {
    // Keys this commit already sent in an insert whose outcome is unknown: found in the log on a retry,
    // they are this write's own rows (stored), not duplicates.
    const attempted = new Set<string>();
    for (let attempt = 0; ; attempt++) {
      try {
        const c = attempt === 0 ? await checked : undefined;
        return await this.#commitOnce(rows, attempted, c, c ? ids : undefined);
      } catch (e) {
        for (const r of rows) this.#heads.delete(r.tenant);
        if (attempt >= this.#maxRetries || !isTransient(e)) {
          throw new StoreError(
            STORE_ERROR_CODES.WRITE_FAILED,
            `flushing ${rows.length} events failed after ${attempt + 1} attempt(s): ${(e as Error).message}`,
            { cause: e },
          );
        }
        this.#stats.retries++;
        const backoff = Math.min(this.#retryMax, this.#retryBase * 2 ** attempt);
        await sleep(backoff / 2 + Math.random() * (backoff / 2));
      }
    }
  }

  /**
   * Returns, per row, whether it was newly appended (false: a duplicate or a conflict) and its conflict.
   * `ids`: the insert of the rows' ids into the id index, when sent ahead with the check.
   */
  async #commitOnce(rows: Row[], attempted: Set<string>, checked?: Checked, ids?: Promise<unknown>): Promise<Committed> {
    const stream = this.#stream();
    if (stream !== this.#headsStream) {
      this.#heads.clear();
      this.#headsStream = stream;
    }
    const fresh = checked ? checked.fresh.slice() : firstOccurrences(rows);
    const { stored, conflicts } = checked ? checked.existing : await this.#existing(rows, fresh);
    const idsWritten = ids ?? this.#insertIds(rows, fresh);
    const conflict = conflictsOf(rows, fresh, conflicts);
    // toInsert[i]: fresh and not yet in the log. fresh but not toInsert: landed in an earlier attempt.
    const toInsert = fresh.slice();
    if (stored.size > 0 || conflicts.size > 0) {
      for (let i = 0; i < rows.length; i++) {
        const k = (rows[i] as Row).key;
        if (!fresh[i]) continue;
        if (stored.has(k)) {
          toInsert[i] = false;
          if (!attempted.has(k)) fresh[i] = false;
        } else if (conflicts.has(k)) {
          toInsert[i] = false;
          fresh[i] = false;
        }
      }
    }
    const tenants = new Set<string>();
    for (let i = 0; i < rows.length; i++) if (toInsert[i]) tenants.add((rows[i] as Row).tenant);
    if (tenants.size === 0) {
      // Everything landed in an earlier attempt, maybe without its heads: record them (from the log) now.
      const landed = new Set<string>();
      for (let i = 0; i < rows.length; i++) if (fresh[i]) landed.add((rows[i] as Row).tenant);
      if (landed.size > 0) await recordHeads(this.#client, this.#db, 'cost_events', await this.#loadHeads([...landed], stream), stream);
      return { fresh, conflict };
    }
    const heads = await this.#loadHeads([...tenants], stream);
    const lines: string[] = [];
    const token = createHash('sha256');
    for (let i = 0; i < rows.length; i++) {
      if (!toInsert[i]) continue;
      const r = rows[i] as Row;
      attempted.add(r.key);
      const head = heads.get(r.tenant) as Head;
      const seq = head.seq + 1;
      const hash = chainHash(head.hash, `${r.canonicalPre}${seq}${r.post}]`);
      // The insert line is the hashed array with the two links appended: the bytes hashed are the bytes sent.
      lines.push(`${r.pre}${seq}${r.post}${linkTail(head.hash, hash, stream)}`);
      token.update(hash);
      head.seq = seq;
      head.hash = hash;
    }
    // The ids before the rows: an id whose row did not land is a leftover the existence check sees through (it
    // reads the row in the log before refusing an id), while a row whose id were missing could be stored twice.
    const idsFailed = await idsWritten;
    if (idsFailed) throw idsFailed;
    await this.#client.insert({
      table: this.#table,
      values: lines,
      format: 'JSONCompactEachRow',
      columns: WRITE_COLUMNS,
      // The stream is in the token: another stream's rows of the same hashes (its own chain) are not a repeat.
      clickhouse_settings: { insert_deduplication_token: `${token.digest('hex')}:${stream}` },
    });
    this.#prefetchNext();
    // The durable head record, right after the rows it points at (verify checks the rows reach it).
    await recordHeads(this.#client, this.#db, 'cost_events', heads, stream);
    for (const [t, h] of heads) this.#heads.set(t, h);
    return { fresh, conflict };
  }

  /**
   * Writes the ids of the rows first of their key in the batch to the id index, all of them: the ids of
   * duplicates and conflicts are entries of the log's own rows or leftovers the check sees through, so the
   * insert need not wait for the commit to decide (the prefetch sends it right behind the check). Settles to
   * the error when it failed, never rejects (it may be awaited only later, or not at all).
   */
  #insertIds(rows: readonly Row[], fresh: readonly boolean[]): Promise<unknown> {
    const lines: string[] = [];
    for (let i = 0; i < rows.length; i++) {
      if (!fresh[i]) continue;
      const r = rows[i] as Row;
      // r.pre is `["<tenant>",`.
      lines.push(`${r.pre}${JSON.stringify(r.eventId)},${r.eventTime}]`);
    }
    // No deduplication token: the table keeps no insert deduplication window (a retried insert that landed
    // adds copies, which collapse), so a token left by an earlier statement on the connection is inert too.
    return this.#client
      .insert({
        table: this.#idTable,
        values: lines,
        format: 'JSONCompactEachRow',
        columns: ['tenant_id', 'event_id', 'event_time'],
      })
      .then(
        () => undefined,
        (e: unknown) => e ?? new Error('the id index insert failed'),
      );
  }

  /**
   * What the log holds of these rows' (tenant, event_id) keys. Usually few stored rows fall in the rows' time
   * span (events arrive roughly in time order): those are read in one cheap range query and matched here; when
   * more than a bound do (late events, a replay of old ones), the rows are looked up by their keys instead.
   * The ids found in neither way are looked up in the id index (cost_event_ids), which finds one stored under
   * another event time; such an id is refused only once its row is read in the log. A key stored with the
   * row's own time is compared by body (eventIdentity): a resend is stored, a changed event a conflict.
   */
  async #existing(rows: Row[], fresh: boolean[]): Promise<Existing> {
    // The event time of each key checked (a key's first row in the batch).
    const want = new Map<string, number>();
    const tenants = new Set<string>();
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = 0; i < rows.length; i++) {
      if (!fresh[i]) continue;
      const r = rows[i] as Row;
      want.set(r.key, r.eventTime);
      tenants.add(r.tenant);
      if (r.eventTime < lo) lo = r.eventTime;
      if (r.eventTime > hi) hi = r.eventTime;
    }
    const stored = new Set<string>();
    const conflicts = new Map<string, number>();
    if (want.size === 0) return { stored, conflicts };
    const bound = Math.max(RANGE_CHECK_MIN, RANGE_CHECK_FACTOR * want.size);
    // The id index's range of the batch's ids (#storedElsewhere) goes in the same statement: one round trip.
    const span = idSpan(want.keys());
    const spanSql = `SELECT 0, tenant_id, event_id, toUnixTimestamp64Milli(event_time) FROM ${this.#table}
WHERE tenant_id IN {tenants:Array(String)}
  AND event_time >= fromUnixTimestamp64Milli({lo:Int64}, 'UTC') AND event_time <= fromUnixTimestamp64Milli({hi:Int64}, 'UTC')
LIMIT {limit:UInt32}`;
    const idSql = `SELECT 1, tenant_id, event_id, toUnixTimestamp64Milli(event_time) FROM ${this.#idTable}
WHERE tenant_id IN {idTenants:Array(String)} AND event_id >= {idLo:String} AND event_id <= {idHi:String}
LIMIT {limit:UInt32}`;
    const rs = await this.#client.query({
      query: span ? `SELECT * FROM (${spanSql})\nUNION ALL\nSELECT * FROM (${idSql})` : spanSql,
      query_params: { tenants: [...tenants], lo, hi, limit: bound + 1, ...(span ? { idTenants: span.tenants, idLo: span.lo, idHi: span.hi } : {}) },
      format: 'JSONCompactEachRow',
    });
    const inSpan: Array<[string, string, number | string]> = [];
    let inIds: Array<[string, string, number | string]> | undefined = span ? [] : undefined;
    for (const [tag, t, id, ms] of await rs.json<[number | string, string, string, number | string]>()) (Number(tag) === 0 ? inSpan : (inIds as typeof inSpan)).push([t, id, ms]);
    if (inIds && inIds.length > bound) inIds = undefined;
    if (inSpan.length <= bound) {
      for (const [t, id, ms] of inSpan) {
        const k = `${t}\u0000${id}`;
        const time = want.get(k);
        if (time === undefined) continue;
        if (Number(ms) === time) stored.add(k);
        else conflicts.set(k, Number(ms));
      }
    } else {
      for (const chunk of this.#chunks([...want.keys()])) {
        for (const [t, id] of await this.#keyed<[string, string]>('tenant_id, event_id', chunk, want)) stored.add(`${t}\u0000${id}`);
      }
    }
    // The exact event in the log wins over a copy under another time (one stored twice before the id index).
    for (const k of stored) conflicts.delete(k);
    const unseen = [...want.keys()].filter((k) => !stored.has(k) && !conflicts.has(k));
    if (unseen.length > 0) for (const [k, t] of await this.#storedElsewhere(unseen, want, inIds)) conflicts.set(k, t);
    if (stored.size > 0) {
      const changed = await this.#changedBodies(rows, fresh, stored, want);
      for (const k of changed) {
        stored.delete(k);
        conflicts.set(k, want.get(k) as number);
      }
    }
    return { stored, conflicts };
  }

  /** Keys in chunks the transport takes (query parameters). */
  *#chunks(keys: readonly string[]): Generator<string[]> {
    for (let off = 0; off < keys.length; off += this.#checkChunk) yield keys.slice(off, off + this.#checkChunk);
  }

  /**
   * Rows of the log with these keys at the given event times (a superset: tenants, times and ids are matched
   * as three lists; callers match the keys).
   */
  async #keyed<T>(select: string, keys: readonly string[], times: ReadonlyMap<string, number | readonly number[]>): Promise<T[]> {
    const ts = new Set<string>();
    const is = new Set<string>();
    const at = new Set<number>();
    for (const k of keys) {
      const cut = k.indexOf('\u0000');
      ts.add(k.slice(0, cut));
      is.add(k.slice(cut + 1));
      const t = times.get(k);
      if (typeof t === 'number') at.add(t);
      else for (const x of t ?? []) at.add(x);
    }
    const rs = await this.#client.query({
      query: `SELECT ${select} FROM ${this.#table}
WHERE tenant_id IN {tenants:Array(String)}
  AND event_time IN {times:Array(DateTime64(3, 'UTC'))}
  AND event_id IN {ids:Array(String)}`,
      query_params: { tenants: [...ts], times: [...at], ids: [...is] },
      format: 'JSONCompactEachRow',
    });
    return rs.json<T>();
  }

  /**
   * Keys the log holds under another event time than the row's: found in the id index, then read in the log
   * (an index entry without its row is a write that failed midway, not an event). Key -> the stored time.
   * `inRange`: the index's entries in the range of the batch's ids, when the existence check could read them
   * (ids that sort together: sequential, time-ordered such as ULID or UUIDv7); otherwise (ids spread over the
   * whole index, such as random UUIDs) the keys are looked up one chunk at a time.
   */
  async #storedElsewhere(keys: readonly string[], want: ReadonlyMap<string, number>, inRange?: ReadonlyArray<[string, string, number | string]>): Promise<Map<string, number>> {
    const elsewhere = new Map<string, number[]>();
    const found = (entries: ReadonlyArray<[string, string, number | string]>): void => {
      for (const [t, id, ms] of entries) {
        const k = `${t}\u0000${id}`;
        const time = want.get(k);
        // The row's own time: a leftover of a failed write (the range check found no such row).
        if (time === undefined || Number(ms) === time) continue;
        const list = elsewhere.get(k);
        if (!list) elsewhere.set(k, [Number(ms)]);
        else if (!list.includes(Number(ms))) list.push(Number(ms));
      }
    };
    if (inRange) found(inRange);
    else {
      for (const chunk of this.#chunks(keys)) {
        const ts = new Set<string>();
        const is = new Set<string>();
        for (const k of chunk) {
          const cut = k.indexOf('\u0000');
          ts.add(k.slice(0, cut));
          is.add(k.slice(cut + 1));
        }
        const rs = await this.#client.query({
          query: `SELECT tenant_id, event_id, toUnixTimestamp64Milli(event_time) FROM ${this.#idTable}
WHERE tenant_id IN {tenants:Array(String)} AND event_id IN {ids:Array(String)}`,
          query_params: { tenants: [...ts], ids: [...is] },
          format: 'JSONCompactEachRow',
        });
        found(await rs.json<[string, string, number | string]>());
      }
    }
    const out = new Map<string, number>();
    if (elsewhere.size === 0) return out;
    for (const chunk of this.#chunks([...elsewhere.keys()])) {
      for (const [t, id, ms] of await this.#keyed<[string, string, number | string]>('tenant_id, event_id, toUnixTimestamp64Milli(event_time)', chunk, elsewhere)) {
        const k = `${t}\u0000${id}`;
        if (elsewhere.get(k)?.includes(Number(ms))) out.set(k, Number(ms));
      }
    }
    return out;
  }

  /** Of the keys stored with the row's own time, those whose stored row is another event than the row. */
  async #changedBodies(rows: readonly Row[], fresh: readonly boolean[], stored: ReadonlySet<string>, want: ReadonlyMap<string, number>): Promise<string[]> {
    const mine = new Map<string, string>();
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i] as Row;
      if (fresh[i] && stored.has(r.key)) mine.set(r.key, rowIdentity(r));
    }
    const same = new Set<string>();
    for (const chunk of this.#chunks([...mine.keys()])) {
      for (const raw of await this.#keyed<unknown[]>(CANONICAL_SELECT, chunk, want)) {
        const v = normaliseRow(raw);
        const k = `${v[TENANT_INDEX] as string}\u0000${v[EVENT_ID_INDEX] as string}`;
        if (v[EVENT_TIME_INDEX] === want.get(k) && mine.get(k) === eventIdentity(v)) same.add(k);
      }
    }
    return [...mine.keys()].filter((k) => !same.has(k));
  }

  /** Chain heads of the tenants' streams `stream`, copied (the caller advances them and they are kept only after a successful insert). */
  async #loadHeads(tenants: string[], stream: number): Promise<Map<string, Head>> {
    const out = new Map<string, Head>();
    const missing: string[] = [];
    for (const t of tenants) {
      const h = this.#heads.get(t);
      if (h) out.set(t, { ...h });
      else missing.push(t);
    }
    if (missing.length === 0) return out;
    // The chain head is the stream's highest seq: the one query on the log bounded by seq, not by time.
    const rs = await this.#client.query({
      query: `SELECT tenant_id, max(seq) AS seq FROM ${this.#table} WHERE tenant_id IN {tenants:Array(String)} AND stream = {stream:UInt16} GROUP BY tenant_id`,
      query_params: { tenants: missing, stream },
      format: 'JSONCompactEachRow',
    });
    const maxSeq = new Map<string, number>();
    for (const [t, s] of await rs.json<[string, number | string]>()) maxSeq.set(t, Number(s));
    // A recorded head beyond the rows (the newest rows were removed) is continued, so the gap stays visible.
    const recorded = await recordedHeads(this.#client, this.#db, 'cost_events', missing, stream);
    for (const t of missing) {
      const seq = maxSeq.get(t) ?? 0;
      const r = recorded.get(t);
      if (r && r.seq > seq) {
        out.set(t, { ...r });
        continue;
      }
      if (seq === 0) {
        out.set(t, { seq: 0, hash: GENESIS_HASH });
        continue;
      }
      const hr = await this.#client.query({
        query: `SELECT hash FROM ${this.#table} WHERE tenant_id = {tenant:String} AND stream = {stream:UInt16} AND seq = {seq:UInt64} LIMIT 1`,
        query_params: { tenant: t, stream, seq },
        format: 'JSONCompactEachRow',
      });
      const row = (await hr.json<[string]>())[0];
      if (!row) throw new StoreError(STORE_ERROR_CODES.QUERY, `chain head of tenant ${t} (stream ${stream}, seq ${seq}) not found`);
      out.set(t, { seq, hash: row[0] });
    }
    return out;
  }
}

function positive(n: number, field: string): number {
  if (!Number.isFinite(n) || n <= 0) throw new StoreError(STORE_ERROR_CODES.CONFIG, `${field} must be a positive number`, { field });
  return n;
}

function nonNegative(n: number, field: string): number {
  if (!Number.isInteger(n) || n < 0) throw new StoreError(STORE_ERROR_CODES.CONFIG, `${field} must be a non-negative integer`, { field });
  return n;
}
