import { Redis } from 'ioredis';

/**
 * The ledger's Redis connection fails fast while Redis is away (no offline queue, no per-command
 * retry, a command timeout for a Redis that accepts but does not answer) and keeps reconnecting with
 * backoff in the background, so admissions fail closed at once and resume by themselves.
 */
export interface LedgerConnectionOptions {
  commandTimeoutMs: number;
  backoff: { initialMs: number; maxMs: number };
  onError: (err: unknown) => void;
}

export class LedgerConnection {
  readonly redis: Redis;
  private everReady = false;
  private inOutage = false;

  constructor(url: string, private readonly o: LedgerConnectionOptions) {
    this.redis = new Redis(url, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: o.commandTimeoutMs,
      connectTimeout: Math.max(o.commandTimeoutMs, 1000),
      retryStrategy: (attempt) => Math.min(o.backoff.maxMs, o.backoff.initialMs * 2 ** Math.min(attempt - 1, 20)),
      connectionName: 'forge-ledger',
    });
    this.redis.on('ready', () => {
      this.everReady = true;
      this.inOutage = false;
    });
    // ioredis emits an error per reconnect attempt: report the first of each outage only.
    this.redis.on('error', (e: unknown) => {
      if (this.inOutage) return;
      this.inOutage = true;
      o.onError(e);
    });
  }

  /** Ready now; or, before the first connection only, within the command timeout. */
  async ensureReady(): Promise<void> {
    const r = this.redis;
    if (r.status === 'ready') return;
    if (this.everReady || r.status === 'end') throw new Error(`redis connection is ${r.status}`);
    await new Promise<void>((resolve, reject) => {
      const onReady = (): void => {
        clearTimeout(t);
        resolve();
      };
      const t = setTimeout(() => {
        r.off('ready', onReady);
        reject(new Error(`redis not ready after ${this.o.commandTimeoutMs} ms (status ${r.status})`));
      }, this.o.commandTimeoutMs);
      r.once('ready', onReady);
    });
  }

  async close(): Promise<void> {
    try {
      if (this.redis.status === 'ready') await this.redis.quit();
      else this.redis.disconnect();
    } catch {
      this.redis.disconnect();
    }
  }
}
