import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisLedger, type ReserveInput } from '../guard/index.ts';
import { freePort, freshPrefix, startRedis, waitFor, type RedisServer } from './helpers/redis.ts';

const BIG = Number.MAX_SAFE_INTEGER;

function input(id: string): ReserveInput {
  return { reservationId: id, scopes: [{ scope: 'tenant:acme', caps: { dayHard: BIG, weekHard: BIG, runCap: BIG } }], amountMicros: 10, now: Date.now(), ttlMs: 60_000 };
}

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (e) {
    return (e as { code?: string }).code;
  }
}

describe('RedisLedger: fail closed', () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    await redis.stop();
  });

  it('rejects every method with FORGE_ERR_LEDGER_UNAVAILABLE when Redis was never reachable', async () => {
    const port = await freePort();
    const l = new RedisLedger({ url: `redis://127.0.0.1:${port}`, keyPrefix: freshPrefix('dead'), commandTimeoutMs: 200, onError: () => {} });
    try {
      expect(await codeOf(l.reserve(input('a')))).toBe('FORGE_ERR_LEDGER_UNAVAILABLE');
      expect(await codeOf(l.settle('a', { eventId: 'e', amountMicros: 1, eventTime: Date.now(), scopes: ['global'] }))).toBe('FORGE_ERR_LEDGER_UNAVAILABLE');
      expect(await codeOf(l.record('e', ['global'], 1, Date.now()))).toBe('FORGE_ERR_LEDGER_UNAVAILABLE');
      expect(await codeOf(l.expire(Date.now()))).toBe('FORGE_ERR_LEDGER_UNAVAILABLE');
      expect(await codeOf(l.snapshot('global', Date.now()))).toBe('FORGE_ERR_LEDGER_UNAVAILABLE');
    } finally {
      await l.close();
    }
  });

  it('Redis killed: reserve rejects with the code (nothing admitted); it admits again when Redis returns', async () => {
    const keyPrefix = freshPrefix('kill');
    const l = new RedisLedger({ url: redis.url, keyPrefix, onError: () => {}, backoff: { initialMs: 20, maxMs: 100 } });
    try {
      await l.ready();
      expect((await l.reserve(input('before'))).ok).toBe(true);
      await redis.kill();
      // Every attempt while Redis is down is refused, none admitted.
      const during = await Promise.all(Array.from({ length: 20 }, (_, i) => codeOf(l.reserve(input(`during-${i}`)))));
      expect(new Set(during)).toEqual(new Set(['FORGE_ERR_LEDGER_UNAVAILABLE']));
      await redis.restart();
      await waitFor('admits again', async () => {
        try {
          return (await l.reserve(input('after'))).ok;
        } catch {
          return false;
        }
      });
      // The restarted cache-only Redis lost its state; the ledger put its open reservation back before it
      // admitted again, so the task admitted before the outage still counts: two open.
      expect((await l.snapshot('tenant:acme', Date.now())).openReservations).toBe(2);
    } finally {
      await l.close();
    }
  });
});
