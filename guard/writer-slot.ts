import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { FastFailConnection, type Backoff } from './redis.ts';

/**
 * A writer slot: the stream this process appends every tenant's logs on (store/heads.ts), held in Redis as a
 * lease for as long as the process runs, so several API processes on one ClickHouse server never append on the
 * same stream (two writers on one chain would take the same seq: verify reports duplicate_seq). Each stream
 * keeps one writer, its chain and its snapshot watermark stay exact, and no lock is taken per append.
 *
 * The lowest free slot is claimed (SET NX with a TTL, one script over the slots): a single process on Redis
 * gets slot 0, the stream of the rows written before streams, and a process restarted after a clean stop
 * (its slot released) takes its slot back; after a crash its slot is free again once the lease expired, and
 * until then the restart takes another one. A heartbeat renews the lease (and sets it again when Redis lost
 * it). When another process holds it (the lease ran out while this one stalled), a new slot is claimed and
 * appends move there: the writer reads its heads again. When the lease cannot be renewed for its whole TTL
 * (Redis away), the slot is no longer this process's to trust: `stream` throws, so appends fail (and are
 * retried by their callers) rather than risk a second writer on a stream, until a renewal succeeds.
 *
 * One process per data directory (the embedded engine) needs none of this: it is slot 0.
 */
export interface WriterSlotOptions {
  url: string;
  keyPrefix?: string;
  /** The lease, ms (default 30 000). */
  ttlMs?: number;
  /** How often the lease is renewed, ms (default ttl / 3). */
  heartbeatMs?: number;
  /** Slots there are (default 1024; at most 65 536, the streams a log holds per tenant). */
  slots?: number;
  commandTimeoutMs?: number;
  backoff?: Backoff;
  /** Renewal failures (first of each outage) and slots lost to another process. */
  onError?: (e: unknown) => void;
  /** Clock, epoch ms (tests). */
  now?: () => number;
}

/** SET NX on the first free slot key; returns its number, or -1 when all are held. */
const CLAIM = `
for i = 0, tonumber(ARGV[3]) - 1 do
  if redis.call('SET', ARGV[1] .. i, ARGV[2], 'NX', 'PX', ARGV[4]) then return i end
end
return -1`;

/** Renews the lease when held (or set again when Redis lost it): 1; held by another: 0. */
const RENEW = `
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not v then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
return 0`;

/** Deletes the lease when held. */
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

export class RedisWriterSlot {
  readonly owner = `${hostname()}:${process.pid}:${randomUUID()}`;
  readonly #conn: FastFailConnection;
  readonly #prefix: string;
  readonly #ttl: number;
  readonly #slots: number;
  readonly #onError: (e: unknown) => void;
  readonly #now: () => number;
  #slot = -1;
  /** Until when the lease is known held: the last claim or renewal sent before it succeeded, plus the TTL. */
  #validUntil = 0;
  #timer: NodeJS.Timeout | undefined;
  #beat: Promise<void> | undefined;
  #closed = false;

  private constructor(opts: WriterSlotOptions) {
    this.#prefix = `${opts.keyPrefix ?? 'forge:'}writer-slot:`;
    this.#ttl = opts.ttlMs ?? 30_000;
    this.#slots = opts.slots ?? 1024;
    if (!Number.isInteger(this.#slots) || this.#slots < 1 || this.#slots > 65_536) throw new Error('slots must be an integer 1..65536');
    if (!Number.isInteger(this.#ttl) || this.#ttl < 10) throw new Error('ttlMs must be an integer >= 10');
    this.#onError = opts.onError ?? (() => {});
    this.#now = opts.now ?? Date.now;
    this.#conn = new FastFailConnection(opts.url, { commandTimeoutMs: opts.commandTimeoutMs ?? 2000, ...(opts.backoff ? { backoff: opts.backoff } : {}), name: 'forge-writer-slot', onError: this.#onError });
    this.#conn.defineScripts({ forgeSlotClaim: { lua: CLAIM, numberOfKeys: 0 }, forgeSlotRenew: { lua: RENEW, numberOfKeys: 1 }, forgeSlotRelease: { lua: RELEASE, numberOfKeys: 1 } });
  }

  /** Connects and claims the lowest free slot; throws when Redis does not answer or every slot is held. */
  static async claim(opts: WriterSlotOptions): Promise<RedisWriterSlot> {
    const s = new RedisWriterSlot(opts);
    try {
      await s.#conn.ensureReady();
      await s.#claim();
    } catch (e) {
      await s.#conn.close();
      throw e;
    }
    const every = opts.heartbeatMs ?? Math.max(1, Math.floor(s.#ttl / 3));
    s.#timer = setInterval(() => void s.heartbeat(), every);
    s.#timer.unref();
    return s;
  }

  async #claim(): Promise<void> {
    const sent = this.#now();
    const slot = Number(await this.#conn.script('forgeSlotClaim')(this.#prefix, this.owner, this.#slots, this.#ttl));
    if (slot < 0) throw new Error(`every writer slot (${this.#slots}) is held by another process`);
    this.#slot = slot;
    this.#validUntil = sent + this.#ttl;
  }

  /** The slot (the stream this process appends on). Throws while the lease is not known held. */
  get stream(): number {
    if (this.#closed) throw new Error('the writer slot is released');
    if (this.#now() >= this.#validUntil) throw new Error(`writer slot ${this.#slot}: lease not renewed for ${this.#ttl} ms (Redis away); appends fail until it is`);
    return this.#slot;
  }

  /** The slot claimed, whether or not its lease is current (for logs and tests). */
  get slot(): number {
    return this.#slot;
  }

  /** Renews the lease now (the timer calls it); moves to a new slot when another process holds this one. */
  heartbeat(): Promise<void> {
    this.#beat ??= this.#renew().finally(() => (this.#beat = undefined));
    return this.#beat;
  }

  async #renew(): Promise<void> {
    if (this.#closed) return;
    const sent = this.#now();
    try {
      const held = Number(await this.#conn.script('forgeSlotRenew')(`${this.#prefix}${this.#slot}`, this.owner, this.#ttl));
      if (held === 1) {
        this.#validUntil = sent + this.#ttl;
        return;
      }
      const lost = this.#slot;
      this.#validUntil = 0;
      await this.#claim();
      this.#onError(new Error(`writer slot ${lost} is held by another process (this one stalled past its lease): appends moved to slot ${this.#slot}`));
    } catch (e) {
      // Redis away: the lease runs out by itself (`stream` throws once it has); the connection reports the outage.
      if (this.#conn.wasEverReady && (e as Error).message?.startsWith('every writer slot')) this.#onError(e);
    }
  }

  /** Stops renewing and releases the slot (a restart then takes it back). */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    await this.#beat;
    try {
      await this.#conn.script('forgeSlotRelease')(`${this.#prefix}${this.#slot}`, this.owner);
    } catch {
      // Redis away: the lease expires by itself.
    }
    await this.#conn.close();
  }
}
