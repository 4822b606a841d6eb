import { Redis, type RedisOptions } from 'ioredis';
import type { ErrorHandler } from './errors.ts';

/** Reconnect backoff: doubling from initialMs up to maxMs, forever (a runner outlives Redis outages). */
export interface Backoff {
  initialMs: number;
  maxMs: number;
}

export const DEFAULT_BACKOFF: Backoff = { initialMs: 50, maxMs: 2000 };

export function backoffDelay(b: Backoff, attempt: number): number {
  return Math.min(b.maxMs, b.initialMs * 2 ** Math.min(Math.max(attempt - 1, 0), 20));
}

/**
 * A command connection that fails fast while Redis is away: no offline queue, no per-command retry, a
 * command timeout for a Redis that accepts connections but does not answer. It keeps reconnecting in
 * the background, so work resumes by itself when Redis returns.
 */
export function fastFailRedis(url: string, opts: { commandTimeoutMs: number; backoff: Backoff; name: string }): Redis {
  const o: RedisOptions = {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: opts.commandTimeoutMs,
    connectTimeout: Math.max(opts.commandTimeoutMs, 1000),
    retryStrategy: (attempt) => backoffDelay(opts.backoff, attempt),
    connectionName: opts.name,
  };
  return new Redis(url, o);
}

/**
 * Tracks availability of one connection: reports the first error of an outage (not every reconnect
 * attempt) and lets a caller wait briefly for the first connection after start.
 */
export class ConnectionWatch {
  private everReady = false;
  private inOutage = false;

  constructor(
    private readonly redis: Redis,
    onError: ErrorHandler,
    where: string,
  ) {
    redis.on('ready', () => {
      this.everReady = true;
      this.inOutage = false;
    });
    redis.on('error', (e: unknown) => {
      if (this.inOutage) return;
      this.inOutage = true;
      onError(e, where);
    });
  }

  /** Resolves when the connection is ready; rejects at once during an outage, or after waitMs at start. */
  async ensureReady(waitMs: number, waitInOutage = false): Promise<void> {
    if (this.redis.status === 'ready') return;
    if ((this.everReady && !waitInOutage) || this.redis.status === 'end') throw new Error(`redis connection is ${this.redis.status}`);
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => {
        this.redis.off('ready', onReady);
        reject(new Error(`redis not ready after ${waitMs} ms (status ${this.redis.status})`));
      }, waitMs);
      const onReady = (): void => {
        clearTimeout(t);
        resolve();
      };
      this.redis.once('ready', onReady);
    });
  }
}
