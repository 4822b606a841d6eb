import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisLedger, RedisSharedSpend, type CounterSeed, type ScopeCaps } from '../guard/index.ts';
import { dayOf, usdToMicros, zeroComponents } from '../rules/index.ts';
import { freshPrefix, startRedis, waitFor, type RedisServer } from './helpers/redis.ts';

// Redis restarted without persistence comes back empty. Before admissions resume, the spend counters are
// rebuilt from the event log and every process puts its open reservations back, so tasks in flight keep
// counting against the cap. The shared spend behind the stop conditions is re-seeded the same way.

let redis: RedisServer;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis?.stop();
});

const CAPS: ScopeCaps = { dayHard: usdToMicros('100'), weekHard: usdToMicros('1000'), runCap: usdToMicros('10000') };
const scopes = [{ scope: 'tenant:t', caps: CAPS }];

describe('Redis comes back empty', () => {
  it('the counters come back from the log and both processes put their open reservations back before admitting', async () => {
    const prefix = freshPrefix('empty');
    // What the event log holds for tenant t: 50 USD spent today.
    const seed = async (): Promise<Map<string, CounterSeed>> => new Map([['tenant:t', { days: new Map([[dayOf(Date.now()), usdToMicros('50')]]), runMicros: usdToMicros('50') }]]);
    const opts = { url: redis.url, keyPrefix: prefix, onError: () => {}, commandTimeoutMs: 500, backoff: { initialMs: 20, maxMs: 200 }, counterSeed: seed };
    const a = new RedisLedger(opts);
    const b = new RedisLedger(opts);
    try {
      await a.ready();
      await b.ready();
      const now = Date.now();
      expect(await a.reserve({ reservationId: 'ra', scopes, amountMicros: usdToMicros('10'), now, ttlMs: 600_000 })).toMatchObject({ ok: true });
      expect(await b.reserve({ reservationId: 'rb', scopes, amountMicros: usdToMicros('20'), now, ttlMs: 600_000 })).toMatchObject({ ok: true });
      expect(await a.snapshot('tenant:t', now)).toMatchObject({ dayMicros: usdToMicros('50'), reservedMicros: usdToMicros('30'), openReservations: 2 });

      await redis.kill();
      await redis.restart(); // empty: no persistence

      // The first admission after the restart waits for the rebuild: it sees the log's 50 USD and both
      // processes' 30 USD in flight (B puts its own back when it reconnects).
      await waitFor('both ledgers reconnected and rebuilt', async () => {
        try {
          const s = await a.snapshot('tenant:t', Date.now());
          return s.reservedMicros === usdToMicros('30') && s.dayMicros === usdToMicros('50');
        } catch {
          return false;
        }
      }, 15_000, 50);
      // 50 spent + 30 in flight: 15 more fits (95 < 100), then 10 more (105), and nothing after that.
      expect(await a.reserve({ reservationId: 'ra2', scopes, amountMicros: usdToMicros('15'), now: Date.now(), ttlMs: 600_000 })).toMatchObject({ ok: true });
      expect(await b.reserve({ reservationId: 'rb2', scopes, amountMicros: usdToMicros('10'), now: Date.now(), ttlMs: 600_000 })).toMatchObject({ ok: true });
      expect(await a.reserve({ reservationId: 'ra3', scopes, amountMicros: usdToMicros('1'), now: Date.now(), ttlMs: 600_000 })).toMatchObject({
        ok: false,
        usedMicros: usdToMicros('50'),
        reservedMicros: usdToMicros('55'),
      });
    } finally {
      await a.close();
      await b.close();
    }
  }, 60_000);

  it('a settle that is the first command after Redis came back empty lands after the rebuild, not under it', async () => {
    const prefix = freshPrefix('empty-settle');
    const seed = async (): Promise<Map<string, CounterSeed>> => new Map([['tenant:t', { days: new Map([[dayOf(Date.now()), usdToMicros('50')]]), runMicros: usdToMicros('50') }]]);
    const a = new RedisLedger({ url: redis.url, keyPrefix: prefix, onError: () => {}, commandTimeoutMs: 500, backoff: { initialMs: 20, maxMs: 200 }, counterSeed: seed });
    try {
      await a.ready();
      expect(await a.reserve({ reservationId: 'rs', scopes, amountMicros: usdToMicros('10'), now: Date.now(), ttlMs: 600_000 })).toMatchObject({ ok: true });
      await redis.kill();
      await redis.restart();
      // The first thing after the restart is the task's settle: the counters are rebuilt (50 from the log)
      // and the reservation put back before it, so its 8 USD are added on top, not overwritten by the seed.
      await waitFor('settled after the rebuild', async () => {
        try {
          return (await a.settle('rs', { eventId: 'es', amountMicros: usdToMicros('8'), eventTime: Date.now(), scopes: ['tenant:t'] })) === 'settled';
        } catch {
          return false;
        }
      }, 15_000, 50);
      expect(await a.snapshot('tenant:t', Date.now())).toMatchObject({ dayMicros: usdToMicros('58'), reservedMicros: 0, openReservations: 0 });
    } finally {
      await a.close();
    }
  }, 60_000);

  it('the shared spend answers unseeded until it is seeded from the log, then counts each event once', async () => {
    const prefix = freshPrefix('spend');
    const ss = new RedisSharedSpend({ url: redis.url, keyPrefix: prefix, onError: () => {}, commandTimeoutMs: 500, backoff: { initialMs: 20, maxMs: 200 } });
    try {
      const day = dayOf(Date.now());
      const log = async () => new Map([['tenant:t', { days: [{ day, components: { ...zeroComponents(), rli: usdToMicros('40') }, opsMicros: usdToMicros('40'), tasks: 4, failed: 1 }], run: { components: { ...zeroComponents(), rli: usdToMicros('40') }, totalMicros: usdToMicros('40'), tasks: 4 } }]]);
      const item = { eventId: 'e1', scopes: ['global', 'tenant:t', 'run:t/r'], at: Date.now(), components: { ...zeroComponents(), rli: usdToMicros('5') }, failed: false };
      expect(await ss.add([item])).toBe('unseeded');
      expect(await ss.seed(log)).toBe('seeded');
      expect(await ss.add([item])).toEqual([true]);
      expect(await ss.add([item])).toEqual([false]); // the same event through another process
      const snap = (await ss.read(['tenant:t'], [day])).get('tenant:t')!;
      expect(snap.days).toEqual([{ day, components: { ...zeroComponents(), rli: usdToMicros('45') }, opsMicros: usdToMicros('45'), tasks: 5, failed: 1 }]);
      await redis.kill();
      await redis.restart();
      await waitFor('reconnected', async () => (await ss.add([{ ...item, eventId: 'e2' }]).catch(() => 'down')) === 'unseeded', 15_000, 50);
    } finally {
      await ss.close();
    }
  }, 60_000);
});

describe('a Redis outage during ingest', () => {
  it('the events it kept out of the shared spend are added when Redis answers again, each once', async () => {
    const { startProxy } = await import('./helpers/redis.ts');
    const { Guardrail, InProcessHaltBus, InProcessLedger } = await import('../guard/index.ts');
    const { costEvent } = await import('./helpers/api.ts');
    const { OPEN_BANDS } = await import('./helpers/guardrail.ts');
    const proxy = await startProxy(redis.port);
    const prefix = freshPrefix('outage');
    const opts = { keyPrefix: prefix, onError: () => {}, commandTimeoutMs: 300, backoff: { initialMs: 20, maxMs: 100 } };
    const viaProxy = new RedisSharedSpend({ url: proxy.url, ...opts });
    const direct = new RedisSharedSpend({ url: redis.url, ...opts });
    const errors: unknown[] = [];
    const g = new Guardrail({
      bands: OPEN_BANDS, ledger: new InProcessLedger(), bus: new InProcessHaltBus(), now: Date.now, onChange: () => {}, audit: async () => {},
      onError: (e) => errors.push(e), reservationTtlMs: 60_000, sharedSpend: viaProxy, spendSeed: async () => new Map(),
    });
    try {
      expect(await direct.seed(async () => new Map())).toBe('seeded');
      const day = dayOf(Date.now());
      await g.ingest([costEvent({ eventId: 'o1', tenantId: 'out', totalMicros: usdToMicros('2'), eventTime: Date.now() })]);
      proxy.cut();
      // Redis unreachable from this process: the event still counts here, and is kept for the shared spend.
      await g.ingest([costEvent({ eventId: 'o2', tenantId: 'out', totalMicros: usdToMicros('3'), eventTime: Date.now() })]);
      expect(errors.length).toBeGreaterThan(0);
      expect(g.totals('tenant:out').dayMicros).toBe(usdToMicros('5'));
      expect((await direct.read(['tenant:out'], [day])).get('tenant:out')!.run.tasks).toBe(1);
      proxy.restore();
      await waitFor('added after the outage', async () => {
        await g.republish().catch(() => undefined);
        return (await direct.read(['tenant:out'], [day])).get('tenant:out')!.run.tasks === 2;
      }, 10_000, 50);
      await g.republish(); // again: nothing is added twice
      expect((await direct.read(['tenant:out'], [day])).get('tenant:out')!.days[0]!.opsMicros).toBe(usdToMicros('5'));
    } finally {
      g.close();
      await viaProxy.close();
      await direct.close();
      await proxy.close();
    }
  }, 30_000);
});
