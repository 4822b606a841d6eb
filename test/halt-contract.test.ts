import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { GuardState, StateChange } from '../rules/index.ts';
import { InProcessHaltBus, RedisHaltBus, type HaltBus, type ErrorHandler } from '../guard/index.ts';
import { freshPrefix, startRedis, waitFor, type RedisServer } from './helpers/redis.ts';

/** Buses sharing one backend: `pub` publishes; `sub()` gives another participant (another process for Redis). */
interface BusWorld {
  pub: HaltBus;
  sub(): HaltBus;
  close(): Promise<void>;
}
type BusFactory = (onError: ErrorHandler) => Promise<BusWorld>;

let tenantN = 0;
function tenant(): string {
  return `t${process.pid}-${++tenantN}-${Math.random().toString(36).slice(2, 6)}`;
}

function change(scope: string, seq: number, state: GuardState, previous: GuardState = 'NORMAL'): StateChange {
  return { scope, state, previous, seq, at: 1_700_000_000_000 + seq, reason: `test ${state} ${seq}`, holds: [], weekMicros: 0 };
}

function haltBusContract(name: string, factory: BusFactory): void {
  describe(`HaltBus contract: ${name}`, () => {
    let world: BusWorld;
    const errors: unknown[] = [];
    const onError: ErrorHandler = (e) => errors.push(e);

    beforeAll(async () => {
      world = await factory(onError);
    });
    afterAll(async () => {
      await world.close();
    });
    afterEach(() => {
      errors.length = 0;
    });

    async function subscriber(): Promise<{ bus: HaltBus; got: StateChange[]; off: () => void }> {
      const bus = world.sub();
      const got: StateChange[] = [];
      const off = bus.subscribe((c) => got.push(c));
      await bus.ready();
      return { bus, got, off };
    }

    it('pushes a change to every subscriber and stores it as the scope state', async () => {
      const scope = `tenant:${tenant()}`;
      const a = await subscriber();
      const b = await subscriber();
      expect(await world.pub.publish(change(scope, 1, 'HARD_STOP'))).toBe('published');
      await waitFor('both subscribers', () => a.got.some((c) => c.scope === scope) && b.got.some((c) => c.scope === scope));
      expect(a.got.filter((c) => c.scope === scope).map((c) => [c.seq, c.state])).toEqual([[1, 'HARD_STOP']]);
      expect(b.got.filter((c) => c.scope === scope).map((c) => [c.seq, c.state])).toEqual([[1, 'HARD_STOP']]);
      const cur = await a.bus.current(scope);
      expect(cur).toMatchObject({ scope, seq: 1, state: 'HARD_STOP', reason: 'test HARD_STOP 1' });
      a.off();
      b.off();
    });

    it('returns undefined for a scope that never changed', async () => {
      expect(await world.sub().current(`run:${tenant()}/r1`)).toBeUndefined();
    });

    it('refuses a stale change: not stored, not pushed', async () => {
      const scope = `run:${tenant()}/r1`;
      const s = await subscriber();
      await world.pub.publish(change(scope, 5, 'EMERGENCY_STOP', 'HARD_STOP'));
      expect(await world.pub.publish(change(scope, 5, 'NORMAL'))).toBe('stale');
      expect(await world.pub.publish(change(scope, 3, 'NORMAL'))).toBe('stale');
      expect((await world.pub.current(scope))?.state).toBe('EMERGENCY_STOP');
      await world.pub.publish(change(scope, 6, 'NORMAL', 'EMERGENCY_STOP'));
      await waitFor('seq 6', () => s.got.some((c) => c.scope === scope && c.seq === 6));
      expect(s.got.filter((c) => c.scope === scope).map((c) => c.seq)).toEqual([5, 6]);
      expect((await s.bus.current(scope))?.state).toBe('NORMAL');
      s.off();
    });

    it('orders by seq per scope: a high seq in one scope does not block another scope', async () => {
      const t = tenant();
      const s = await subscriber();
      await world.pub.publish(change(`tenant:${t}`, 40, 'WARNING'));
      expect(await world.pub.publish(change(`run:${t}/r1`, 1, 'HARD_STOP'))).toBe('published');
      await waitFor('run change', () => s.got.some((c) => c.scope === `run:${t}/r1`));
      expect((await world.pub.current(`run:${t}/r1`))?.seq).toBe(1);
      s.off();
    });

    it('delivers a burst in seq order, and a lift brings the scope back to NORMAL', async () => {
      const scope = `tenant:${tenant()}`;
      const s = await subscriber();
      const states: GuardState[] = ['WARNING', 'HARD_STOP', 'EMERGENCY_STOP', 'NORMAL'];
      for (let i = 1; i <= 40; i++) await world.pub.publish(change(scope, i, states[(i - 1) % 4]!));
      await waitFor('seq 40', () => s.got.some((c) => c.scope === scope && c.seq === 40));
      expect(s.got.filter((c) => c.scope === scope).map((c) => c.seq)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
      expect((await world.sub().current(scope))?.state).toBe('NORMAL');
      s.off();
    });

    it('stops delivering after unsubscribe', async () => {
      const scope = `tenant:${tenant()}`;
      const gone = await subscriber();
      const stays = await subscriber();
      gone.off();
      await world.pub.publish(change(scope, 1, 'HARD_STOP'));
      await world.pub.publish(change(scope, 2, 'NORMAL'));
      await waitFor('remaining subscriber', () => stays.got.some((c) => c.scope === scope && c.seq === 2));
      expect(gone.got.filter((c) => c.scope === scope)).toEqual([]);
      stays.off();
    });

    it('a throwing handler is reported and does not stop the others', async () => {
      const scope = `tenant:${tenant()}`;
      const bus = world.sub();
      const off1 = bus.subscribe(() => {
        throw new Error('handler boom');
      });
      const s = await subscriber();
      await bus.ready();
      await world.pub.publish(change(scope, 1, 'HARD_STOP'));
      await waitFor('delivery', () => s.got.some((c) => c.scope === scope));
      await waitFor('error reported', () => errors.some((e) => (e as Error).message === 'handler boom'));
      off1();
      s.off();
    });

    it('rejects a malformed change naming the field, and stores nothing', async () => {
      const scope = `tenant:${tenant()}`;
      await expect(world.pub.publish({ ...change(scope, 0, 'HARD_STOP') })).rejects.toMatchObject({ code: 'FORGE_ERR_HALT_BUS_INPUT', field: 'seq' });
      await expect(world.pub.publish({ ...change('tenant:bad scope', 1, 'HARD_STOP') })).rejects.toMatchObject({ field: 'scope' });
      await expect(world.pub.publish({ ...change(scope, 1, 'PAUSED' as GuardState) })).rejects.toMatchObject({ field: 'state' });
      expect(await world.pub.current(scope)).toBeUndefined();
    });
  });
}

haltBusContract('in-process', async (onError) => {
  const bus = new InProcessHaltBus({ onError });
  return { pub: bus, sub: () => bus, close: () => bus.close() };
});

let redis: RedisServer;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis?.stop();
});

haltBusContract('redis', async (onError) => {
  const keyPrefix = freshPrefix('halt');
  const all: RedisHaltBus[] = [];
  const make = (): RedisHaltBus => {
    const b = new RedisHaltBus({ url: redis.url, keyPrefix, onError });
    all.push(b);
    return b;
  };
  const pub = make();
  return {
    pub,
    sub: make,
    close: async () => {
      await Promise.all(all.map((b) => b.close()));
    },
  };
});
