import { Redis, type RedisOptions } from 'ioredis';

/**
 * The one way Forge connects to Redis. Three kinds of connection, one policy each:
 *  - `FastFailConnection` (live ledger, halt-bus commands, billing credits): fails fast while Redis is away
 *    (no offline queue, no per-command retry, a command timeout for a Redis that accepts but does not
 *    answer), reports the first error of each outage once, keeps reconnecting with backoff, and runs Lua
 *    scripts defined once;
 *  - `subscriberRedis` (halt-bus pushes): reconnects forever, resubscribes under the caller's control;
 *  - `blockingRedis` (BullMQ queues and workers): BullMQ's own requirement, `maxRetriesPerRequest: null`.
 * Contract test: test/redis-connection.test.ts.
 */

/** Reconnect backoff: doubling from initialMs up to maxMs, forever (a runner outlives Redis outages). */
export interface Backoff {
  initialMs: number;
  maxMs: number;
}

export const DEFAULT_BACKOFF: Backoff = { initialMs: 50, maxMs: 2000 };

export function backoffDelay(b: Backoff, attempt: number): number {
  return Math.min(b.maxMs, b.initialMs * 2 ** Math.min(Math.max(attempt - 1, 0), 20));
}

/** Replies that mean "Redis is there but cannot serve now": treated as unavailable (fail closed). */
const TRANSIENT_REPLY = /^(LOADING|BUSY|OOM|READONLY|MASTERDOWN|CLUSTERDOWN|TRYAGAIN|NOREPLICAS|MISCONF)/;

/** Classifies a failed command: 'unavailable' (connection, timeout, transient reply) or 'internal' (a script or command error). */
export function redisFailureKind(e: unknown): 'unavailable' | 'internal' {
  const err = e as Error;
  return err?.name === 'ReplyError' && !TRANSIENT_REPLY.test(err.message) ? 'internal' : 'unavailable';
}

export interface FastFailOptions {
  /** A command not answered within this many ms fails. */
  commandTimeoutMs: number;
  backoff?: Backoff;
  /** CLIENT SETNAME, e.g. 'forge-ledger'. */
  name: string;
  /** First error of each outage (not every reconnect attempt). */
  onError: (err: unknown) => void;
}

export interface ScriptDef {
  lua: string;
  /** Fixed key count; omitted: the key count is the script call's first argument. */
  numberOfKeys?: number;
}

type ScriptFn = (...args: (string | number)[]) => Promise<unknown>;

/** A command connection that fails fast while Redis is away and resumes by itself when it returns. */
export class FastFailConnection {
  readonly redis: Redis;
  private everReady = false;
  private inOutage = false;
  private readonly timeoutMs: number;

  constructor(url: string, o: FastFailOptions) {
    this.timeoutMs = o.commandTimeoutMs;
    const backoff = o.backoff ?? DEFAULT_BACKOFF;
    const opts: RedisOptions = {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: o.commandTimeoutMs,
      connectTimeout: Math.max(o.commandTimeoutMs, 1000),
      retryStrategy: (attempt) => backoffDelay(backoff, attempt),
      connectionName: o.name,
    };
    this.redis = new Redis(url, opts);
    this.redis.on('ready', () => {
      this.everReady = true;
      this.inOutage = false;
    });
    this.redis.on('error', (e: unknown) => {
      if (this.inOutage) return;
      this.inOutage = true;
      o.onError(e);
    });
  }

  /** True once the connection has been ready at least once. */
  get wasEverReady(): boolean {
    return this.everReady;
  }

  /**
   * Resolves when the connection is ready. During an outage it rejects at once (fail fast), unless
   * waitInOutage; before the first connection it waits up to waitMs (default: the command timeout).
   */
  async ensureReady(waitMs = this.timeoutMs, waitInOutage = false): Promise<void> {
    const r = this.redis;
    if (r.status === 'ready') return;
    if ((this.everReady && !waitInOutage) || r.status === 'end') throw new Error(`redis connection is ${r.status}`);
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => {
        r.off('ready', onReady);
        reject(new Error(`redis not ready after ${waitMs} ms (status ${r.status})`));
      }, waitMs);
      const onReady = (): void => {
        clearTimeout(t);
        resolve();
      };
      r.once('ready', onReady);
    });
  }

  /** Defines Lua scripts once (EVALSHA, loaded again by ioredis after a Redis restart). */
  defineScripts(defs: Record<string, ScriptDef>): void {
    for (const [name, d] of Object.entries(defs)) this.redis.defineCommand(name, d.numberOfKeys === undefined ? { lua: d.lua } : { lua: d.lua, numberOfKeys: d.numberOfKeys });
  }

  /** A defined script, bound to the connection. */
  script(name: string): ScriptFn {
    const fn = (this.redis as unknown as Record<string, ScriptFn>)[name];
    if (!fn) throw new Error(`redis script ${name} is not defined`);
    return fn.bind(this.redis);
  }

  async close(): Promise<void> {
    await quitRedis(this.redis);
  }
}

/** A subscriber connection: reconnects forever with backoff; the caller resubscribes on 'ready'. */
export function subscriberRedis(url: string, o: { backoff?: Backoff; name: string }): Redis {
  const backoff = o.backoff ?? DEFAULT_BACKOFF;
  return new Redis(url, { autoResubscribe: false, maxRetriesPerRequest: null, retryStrategy: (attempt) => backoffDelay(backoff, attempt), connectionName: o.name });
}

/** A connection for BullMQ queues and workers (BullMQ requires maxRetriesPerRequest: null). */
export function blockingRedis(url: string, name: string): Redis {
  return new Redis(url, { maxRetriesPerRequest: null, connectionName: name });
}

/** QUIT when connected, else drop the socket; never throws. */
export async function quitRedis(r: Redis): Promise<void> {
  try {
    if (r.status === 'ready') await r.quit();
    else r.disconnect();
  } catch {
    r.disconnect();
  }
}
