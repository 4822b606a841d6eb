import type { Redis } from 'ioredis';
import { GLOBAL_SCOPE, type ScopeKey, type StateChange } from '../rules/index.ts';
import { GuardError, defaultErrorHandler, type ErrorHandler } from './errors.ts';
import { orderedHandler, validateStateChange, type HaltBus, type HaltHandler, type PublishOutcome } from './halt-bus.ts';
import { DEFAULT_BACKOFF, FastFailConnection, backoffDelay, quitRedis, subscriberRedis, type Backoff } from './redis.ts';

export interface RedisHaltBusOptions {
  /** redis://host:port[/db] */
  url: string;
  /** Prefix of every key and of the channel (one namespace per deployment or test). Default 'forge:'. */
  keyPrefix?: string;
  onError?: ErrorHandler;
  /** A command not answered within this many ms fails (current/publish reject). Default 1000. */
  commandTimeoutMs?: number;
  /** Reconnect backoff of both connections. Default 50 ms doubling to 2 s. */
  backoff?: Backoff;
  /** Scopes re-read after a reconnect, besides global and every scope seen. Bounded; default 10,000. */
  maxWatchedScopes?: number;
}

// The durable write and the push happen in one script: a stale seq neither overwrites a newer state
// nor reaches subscribers, and no subscriber can see a push whose state is not stored yet.
const PUBLISH_LUA = `
local cur = redis.call('HGET', KEYS[1], 'seq')
if cur and tonumber(cur) >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'seq', ARGV[1], 'change', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[2])
return 1
`;

type PublishCmd = (stateKey: string, scopesKey: string, seq: string, json: string, scope: string, channel: string) => Promise<number>;

/**
 * The production halt bus. Push: one Redis channel. Durable state: one hash per scope
 * (`<prefix>halt:state:<scope>` with `seq` and `change`). The subscriber connection reconnects with
 * backoff and, each time it is subscribed again, re-reads the durable state of every scope it has
 * seen, so a change published while it was away still arrives (in seq order, deduplicated).
 */
export class RedisHaltBus implements HaltBus {
  private readonly conn: FastFailConnection;
  private sub: Redis | undefined;
  private readonly subs = new Set<{ deliver(c: StateChange): void }>();
  private readonly watched = new Set<ScopeKey>([GLOBAL_SCOPE]);
  private readonly prefix: string;
  private readonly channel: string;
  private readonly onError: ErrorHandler;
  private readonly timeoutMs: number;
  private readonly backoff: Backoff;
  private readonly maxWatched: number;
  private subscribed: Promise<void> | undefined;
  private closed = false;

  constructor(private readonly opts: RedisHaltBusOptions) {
    this.prefix = opts.keyPrefix ?? 'forge:';
    this.channel = `${this.prefix}halt:changes`;
    this.onError = opts.onError ?? defaultErrorHandler;
    this.timeoutMs = opts.commandTimeoutMs ?? 1000;
    this.backoff = opts.backoff ?? DEFAULT_BACKOFF;
    this.maxWatched = opts.maxWatchedScopes ?? 10_000;
    this.conn = new FastFailConnection(opts.url, { commandTimeoutMs: this.timeoutMs, backoff: this.backoff, name: 'forge-halt-bus', onError: (e) => this.onError(e, 'halt bus connection') });
    this.conn.defineScripts({ forgeHaltPublish: { numberOfKeys: 2, lua: PUBLISH_LUA } });
  }

  private stateKey(scope: ScopeKey): string {
    return `${this.prefix}halt:state:${scope}`;
  }

  async publish(change: StateChange): Promise<PublishOutcome> {
    this.assertOpen();
    validateStateChange(change);
    const json = JSON.stringify(change);
    const r = await this.call('publish', async () => {
      const fn = this.conn.script('forgeHaltPublish') as PublishCmd;
      return fn(this.stateKey(change.scope), `${this.prefix}halt:scopes`, String(change.seq), json, change.scope, this.channel);
    });
    return r === 1 ? 'published' : 'stale';
  }

  async current(scope: ScopeKey): Promise<StateChange | undefined> {
    if (this.closed) throw new GuardError('FORGE_ERR_HALT_BUS_CLOSED', 'current() after close()');
    this.watch(scope);
    const raw = await this.call('current', () => this.conn.redis.hget(this.stateKey(scope), 'change'));
    return raw ? (JSON.parse(raw) as StateChange) : undefined;
  }

  async scopes(): Promise<ScopeKey[]> {
    this.assertOpen();
    return this.call('scopes', () => this.conn.redis.smembers(`${this.prefix}halt:scopes`));
  }

  subscribe(handler: HaltHandler): () => void {
    this.assertOpen();
    const s = orderedHandler(handler, this.onError);
    this.subs.add(s);
    this.ensureSubscriber();
    return () => {
      this.subs.delete(s);
    };
  }

  /** Rejects with FORGE_ERR_HALT_BUS_UNAVAILABLE when Redis is not reached within waitMs (default 5 s). */
  async ready(waitMs = Math.max(5000, 5 * this.timeoutMs)): Promise<void> {
    if (this.subscribed) {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new GuardError('FORGE_ERR_HALT_BUS_UNAVAILABLE', `not subscribed after ${waitMs} ms`)), waitMs);
      });
      await Promise.race([this.subscribed, late]).finally(() => clearTimeout(timer));
      return;
    }
    await this.call('ready', async () => undefined, waitMs);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.subs.clear();
    await Promise.all([this.conn.close(), this.sub ? quitRedis(this.sub) : Promise.resolve()]);
  }

  private watch(scope: ScopeKey): void {
    if (this.watched.has(scope)) return;
    if (this.watched.size >= this.maxWatched) {
      // Forget the oldest non-global scope (Set keeps insertion order).
      for (const s of this.watched) {
        if (s !== GLOBAL_SCOPE) {
          this.watched.delete(s);
          break;
        }
      }
    }
    this.watched.add(scope);
  }

  private ensureSubscriber(): void {
    if (this.sub) return;
    // The subscriber manages its own subscription (autoResubscribe off) so that the durable re-read
    // happens only after SUBSCRIBE is acknowledged: a change published in between is then either
    // pushed or read, never missed.
    const sub = subscriberRedis(this.opts.url, { backoff: this.backoff, name: 'forge-halt-sub' });
    this.sub = sub;
    let outage = false;
    sub.on('error', (e: unknown) => {
      if (outage) return;
      outage = true;
      this.onError(e, 'halt bus subscriber');
    });
    sub.on('message', (channel: string, message: string) => {
      if (channel !== this.channel) return;
      let c: StateChange;
      try {
        c = JSON.parse(message) as StateChange;
        validateStateChange(c);
      } catch (e) {
        this.onError(e, 'halt bus message');
        return;
      }
      this.watch(c.scope);
      this.deliver(c);
    });
    let first = true;
    let resolveFirst!: () => void;
    this.subscribed = new Promise<void>((r) => (resolveFirst = r));
    sub.on('ready', () => {
      outage = false;
      const wasFirst = first;
      first = false;
      sub
        .subscribe(this.channel)
        .then(async () => {
          if (wasFirst) resolveFirst();
          else await this.resyncWithRetry();
        })
        .catch((e: unknown) => {
          if (!this.closed) this.onError(e, 'halt bus resubscribe');
        });
    });
  }

  private async resyncWithRetry(): Promise<void> {
    for (let attempt = 1; !this.closed; attempt++) {
      try {
        await this.resync();
        return;
      } catch (e) {
        if (attempt >= 10) throw e;
        await new Promise((r) => setTimeout(r, backoffDelay(this.backoff, attempt)));
      }
    }
  }

  /** Re-reads the durable state of every watched scope and delivers what is newer. */
  private async resync(): Promise<void> {
    if (this.closed) return;
    const scopes = [...this.watched];
    // The command connection may come back a little after the subscriber: wait for it.
    const raws = await this.call('resync', async () => {
      const p = this.conn.redis.pipeline();
      for (const s of scopes) p.hget(this.stateKey(s), 'change');
      const res = (await p.exec()) ?? [];
      return res.map(([err, v]) => {
        if (err) throw err;
        return v as string | null;
      });
    }, this.timeoutMs, true);
    for (const raw of raws) {
      if (!raw) continue;
      try {
        this.deliver(JSON.parse(raw) as StateChange);
      } catch (e) {
        this.onError(e, 'halt bus resync');
      }
    }
  }

  private deliver(c: StateChange): void {
    for (const s of [...this.subs]) s.deliver(structuredClone(c));
  }

  private async call<T>(what: string, fn: () => Promise<T>, waitMs = this.timeoutMs, waitInOutage = false): Promise<T> {
    try {
      await this.conn.ensureReady(waitMs, waitInOutage);
      return await fn();
    } catch (e) {
      if (e instanceof GuardError) throw e;
      throw new GuardError('FORGE_ERR_HALT_BUS_UNAVAILABLE', `${what}: ${(e as Error).message}`, { cause: e });
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new GuardError('FORGE_ERR_HALT_BUS_CLOSED', 'the bus is closed');
  }
}
