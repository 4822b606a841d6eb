import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StateChange } from '../rules/index.ts';
import { RedisHaltBus } from '../guard/index.ts';
import { freePort, freshPrefix, startProxy, startRedis, waitFor, type RedisServer } from './helpers/redis.ts';

function change(scope: string, seq: number, state: StateChange['state']): StateChange {
  return { scope, state, previous: 'NORMAL', seq, at: Date.now(), reason: 'test', holds: [], weekMicros: 0 };
}

describe('RedisHaltBus: outages', () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis.stop();
  });

  it('a subscriber cut off during a change learns it when its link returns (durable re-read)', async () => {
    const keyPrefix = freshPrefix('halt-cut');
    const proxy = await startProxy(redis.port);
    const pub = new RedisHaltBus({ url: redis.url, keyPrefix, onError: () => {} });
    const lonely = new RedisHaltBus({ url: proxy.url, keyPrefix, onError: () => {}, backoff: { initialMs: 20, maxMs: 100 } });
    try {
      const got: StateChange[] = [];
      lonely.subscribe((c) => got.push(c));
      await lonely.ready();
      // The runner has looked at this scope before (it ran a task of the tenant).
      expect(await lonely.current('tenant:acme')).toBeUndefined();

      proxy.cut();
      await pub.publish(change('tenant:acme', 1, 'HARD_STOP'));
      await pub.publish(change('global', 7, 'WARNING'));
      // Nothing can reach it while cut.
      await new Promise((r) => setTimeout(r, 100));
      expect(got).toEqual([]);

      proxy.restore();
      await waitFor('re-read after reconnect', () => got.length === 2);
      expect(got.map((c) => [c.scope, c.seq, c.state]).sort()).toEqual([
        ['global', 7, 'WARNING'],
        ['tenant:acme', 1, 'HARD_STOP'],
      ]);
      // And a push after the reconnect still arrives, once.
      await pub.publish(change('tenant:acme', 2, 'NORMAL'));
      await waitFor('push after reconnect', () => got.length === 3);
      expect(got[2]).toMatchObject({ scope: 'tenant:acme', seq: 2, state: 'NORMAL' });
    } finally {
      await lonely.close();
      await pub.close();
      await proxy.close();
    }
  });

  it('current() and publish() reject with FORGE_ERR_HALT_BUS_UNAVAILABLE when Redis is unreachable', async () => {
    const port = await freePort();
    const bus = new RedisHaltBus({ url: `redis://127.0.0.1:${port}`, keyPrefix: freshPrefix('halt-dead'), onError: () => {}, commandTimeoutMs: 300 });
    try {
      await expect(bus.current('global')).rejects.toMatchObject({ code: 'FORGE_ERR_HALT_BUS_UNAVAILABLE' });
      await expect(bus.publish(change('global', 1, 'HARD_STOP'))).rejects.toMatchObject({ code: 'FORGE_ERR_HALT_BUS_UNAVAILABLE' });
    } finally {
      await bus.close();
    }
  });

  it('after Redis is killed, current() rejects at once; it works again when Redis returns', async () => {
    const own = await startRedis();
    const keyPrefix = freshPrefix('halt-kill');
    const bus = new RedisHaltBus({ url: own.url, keyPrefix, onError: () => {}, backoff: { initialMs: 20, maxMs: 100 } });
    try {
      await bus.publish(change('global', 1, 'HARD_STOP'));
      expect((await bus.current('global'))?.state).toBe('HARD_STOP');
      await own.kill();
      await waitFor('connection notices', async () => {
        try {
          await bus.current('global');
          return false;
        } catch (e) {
          return (e as { code?: string }).code === 'FORGE_ERR_HALT_BUS_UNAVAILABLE';
        }
      });
      await own.restart();
      // The restarted Redis lost its data (no persistence); the bus works again.
      await waitFor('back', async () => {
        try {
          return (await bus.current('global')) === undefined;
        } catch {
          return false;
        }
      });
    } finally {
      await bus.close();
      await own.stop();
    }
  });
});

describe('RedisHaltBus: start without Redis', () => {
  it('ready() rejects with FORGE_ERR_HALT_BUS_UNAVAILABLE instead of hanging', async () => {
    const port = await freePort();
    const bus = new RedisHaltBus({ url: `redis://127.0.0.1:${port}`, keyPrefix: freshPrefix('halt-nostart'), onError: () => {} });
    try {
      bus.subscribe(() => {});
      await expect(bus.ready(300)).rejects.toMatchObject({ code: 'FORGE_ERR_HALT_BUS_UNAVAILABLE' });
    } finally {
      await bus.close();
    }
  });
});
