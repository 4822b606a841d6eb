import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FastFailConnection, blockingRedis, quitRedis, redisFailureKind, subscriberRedis } from '../guard/index.ts';
import { startRedis, waitFor, type RedisServer } from './helpers/redis.ts';

// The one Redis connection module (guard/redis.ts) against a real redis-server: the fail-fast policy, the
// outage latch (one report per outage), Lua scripts defined once that survive a Redis restart, and the
// subscriber and BullMQ connections reconnecting by themselves.

let redis: RedisServer;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis?.stop();
});

describe('FastFailConnection', () => {
  it('waits for the first connection, then fails fast while Redis is away and reports each outage once', async () => {
    const errors: unknown[] = [];
    const c = new FastFailConnection(redis.url, { commandTimeoutMs: 500, backoff: { initialMs: 20, maxMs: 100 }, name: 'forge-test', onError: (e) => errors.push(e) });
    c.defineScripts({ forgeTestIncr: { numberOfKeys: 1, lua: "return redis.call('INCRBY', KEYS[1], ARGV[1])" } });
    try {
      await c.ensureReady();
      expect(await c.script('forgeTestIncr')('conn:k', 2)).toBe(2);

      await redis.kill();
      await waitFor('the connection notices', () => c.redis.status !== 'ready', 5000);
      const t0 = Date.now();
      await expect(c.ensureReady()).rejects.toThrow(/redis connection is/);
      await expect(c.redis.get('conn:k')).rejects.toThrow();
      // Fail fast: no offline queue, no waiting for the command timeout.
      expect(Date.now() - t0).toBeLessThan(400);
      // Many reconnect attempts, one report.
      await new Promise((r) => setTimeout(r, 300));
      expect(errors).toHaveLength(1);

      await redis.restart(); // empty: the script cache is gone too
      await waitFor('reconnected', () => c.redis.status === 'ready', 10_000);
      expect(await c.script('forgeTestIncr')('conn:k', 5)).toBe(5); // EVALSHA falls back to EVAL after NOSCRIPT
      await redis.kill();
      await waitFor('second outage noticed', () => errors.length === 2, 5000);
      await redis.restart();
      await waitFor('reconnected again', () => c.redis.status === 'ready', 10_000);
    } finally {
      await c.close();
    }
  }, 60_000);

  it('tells a script error (internal) from an unreachable Redis (unavailable)', async () => {
    const c = new FastFailConnection(redis.url, { commandTimeoutMs: 500, name: 'forge-test', onError: () => {} });
    c.defineScripts({ forgeTestBad: { numberOfKeys: 0, lua: "return redis.call('NOSUCHCOMMAND')" } });
    try {
      await c.ensureReady();
      const err = await c.script('forgeTestBad')().catch((e: unknown) => e);
      expect(redisFailureKind(err)).toBe('internal');
      expect(redisFailureKind(new Error('Connection is closed.'))).toBe('unavailable');
      const loading = Object.assign(new Error('LOADING Redis is loading the dataset in memory'), { name: 'ReplyError' });
      expect(redisFailureKind(loading)).toBe('unavailable');
    } finally {
      await c.close();
    }
  });
});

describe('subscriber and queue connections', () => {
  it('reconnect by themselves after Redis comes back', async () => {
    const sub = subscriberRedis(redis.url, { backoff: { initialMs: 20, maxMs: 100 }, name: 'forge-test-sub' });
    const queue = blockingRedis(redis.url, 'forge-test-queue');
    sub.on('error', () => {});
    queue.on('error', () => {});
    try {
      await waitFor('both up', () => sub.status === 'ready' && queue.status === 'ready', 5000);
      expect(queue.options.maxRetriesPerRequest).toBeNull(); // BullMQ's requirement
      expect(sub.options.autoResubscribe).toBe(false); // the halt bus resubscribes and re-reads itself
      await redis.kill();
      await waitFor('both down', () => sub.status !== 'ready' && queue.status !== 'ready', 5000);
      await redis.restart();
      await waitFor('both back', () => sub.status === 'ready' && queue.status === 'ready', 10_000);
    } finally {
      await quitRedis(sub);
      await quitRedis(queue);
    }
  }, 30_000);
});
