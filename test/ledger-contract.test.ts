import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InProcessLedger, RedisLedger, type LiveLedger, type ScopeCaps } from '../guard/index.ts';
import { DAY_MS, scopesOf } from '../rules/index.ts';
import { freshPrefix, startRedis, type RedisServer } from './helpers/redis.ts';

/** Two ledgers over one shared state: `b` stands for a second API process (the same object in-process). */
interface LedgerWorld {
  a: LiveLedger;
  b: LiveLedger;
  close(): Promise<void>;
}

const NOW = Date.UTC(2025, 0, 15, 12, 0, 0);
const BIG = Number.MAX_SAFE_INTEGER;
const OPEN: ScopeCaps = { dayHard: BIG, weekHard: BIG, runCap: BIG };

let n = 0;
function fresh(): { tenant: string; run: string; scopes: [string, string, string] } {
  const tenant = `t${process.pid}x${++n}x${Math.random().toString(36).slice(2, 6)}`;
  const run = `r${n}`;
  return { tenant, run, scopes: scopesOf(tenant, run) };
}

function ledgerContract(name: string, factory: () => Promise<LedgerWorld>): void {
  describe(`LiveLedger contract: ${name}`, () => {
    let w: LedgerWorld;
    beforeAll(async () => {
      w = await factory();
    });
    afterAll(async () => {
      await w.close();
    });

    it('admits while used + reserved < cap, then denies naming scope and cap', async () => {
      const { tenant, scopes } = fresh();
      const caps = [
        { scope: `tenant:${tenant}`, caps: { dayHard: 100, weekHard: BIG, runCap: BIG } },
        { scope: scopes[2], caps: OPEN },
      ];
      const ids: boolean[] = [];
      for (let i = 0; i < 4; i++) {
        const r = await w.a.reserve({ reservationId: `${tenant}-r${i}`, scopes: caps, amountMicros: 40, now: NOW, ttlMs: 60_000 });
        ids.push(r.ok);
        if (i === 3) expect(r).toEqual({ ok: false, scope: `tenant:${tenant}`, cap: 'day', usedMicros: 0, reservedMicros: 120, capMicros: 100 });
      }
      expect(ids).toEqual([true, true, true, false]);
      const snap = await w.b.snapshot(`tenant:${tenant}`, NOW);
      expect(snap).toEqual({ dayMicros: 0, weekMicros: 0, runMicros: 0, reservedMicros: 120, openReservations: 3 });
      // The run scope reserved the same three; a denied reserve touched nothing.
      expect((await w.a.snapshot(scopes[2], NOW)).reservedMicros).toBe(120);
    });

    it('counts spend by the UTC day of the event; the week is the 7 days ending on now, today included', async () => {
      const { scopes } = fresh();
      const t = scopes[1];
      await w.a.record(`${t}-today`, [t], 1_000, NOW);
      await w.a.record(`${t}-6d`, [t], 200, NOW - 6 * DAY_MS);
      await w.a.record(`${t}-7d`, [t], 30, NOW - 7 * DAY_MS);
      // Just before midnight UTC of the day before: yesterday.
      await w.a.record(`${t}-yday`, [t], 4, Date.UTC(2025, 0, 14, 23, 59, 59, 999));
      expect(await w.b.snapshot(t, NOW)).toEqual({ dayMicros: 1_000, weekMicros: 1_204, runMicros: 1_234, reservedMicros: 0, openReservations: 0 });
      // A day later, the 6-days-ago spend leaves the week.
      expect(await w.b.snapshot(t, NOW + DAY_MS)).toMatchObject({ dayMicros: 0, weekMicros: 1_004, runMicros: 1_234 });
    });

    it('checks the week and run caps as well as the day', async () => {
      const { scopes } = fresh();
      const t = scopes[1];
      await w.a.record(`${t}-old`, [t], 500, NOW - 3 * DAY_MS);
      const weekDeny = await w.a.reserve({ reservationId: `${t}-w`, scopes: [{ scope: t, caps: { dayHard: 1_000, weekHard: 500, runCap: BIG } }], amountMicros: 1, now: NOW, ttlMs: 1000 });
      expect(weekDeny).toMatchObject({ ok: false, cap: 'week', usedMicros: 500, capMicros: 500 });
      await w.a.record(`${t}-older`, [t], 700, NOW - 30 * DAY_MS);
      const runDeny = await w.a.reserve({ reservationId: `${t}-r`, scopes: [{ scope: t, caps: { dayHard: 1_000, weekHard: 1_000, runCap: 1_200 } }], amountMicros: 1, now: NOW, ttlMs: 1000 });
      expect(runDeny).toMatchObject({ ok: false, cap: 'run', usedMicros: 1_200, reservedMicros: 0, capMicros: 1_200 });
      const allow = await w.a.reserve({ reservationId: `${t}-ok`, scopes: [{ scope: t, caps: { dayHard: 1_000, weekHard: 1_000, runCap: 1_201 } }], amountMicros: 1, now: NOW, ttlMs: 1000 });
      expect(allow).toEqual({ ok: true, reservationId: `${t}-ok`, expiresAt: NOW + 1000 });
    });

    it('settle releases the reservation and records the actual spend once', async () => {
      const { scopes } = fresh();
      const caps = scopes.map((scope) => ({ scope, caps: OPEN }));
      const id = `${scopes[2]}-res`;
      await w.a.reserve({ reservationId: id, scopes: caps, amountMicros: 5_000, now: NOW, ttlMs: 60_000 });
      expect((await w.b.snapshot(scopes[1], NOW)).reservedMicros).toBe(5_000);
      expect(await w.b.settle(id, { eventId: `${id}-ev`, amountMicros: 4_321, eventTime: NOW + 10, scopes })).toBe('settled');
      for (const s of scopes.slice(1)) {
        expect(await w.a.snapshot(s, NOW)).toEqual({ dayMicros: 4_321, weekMicros: 4_321, runMicros: 4_321, reservedMicros: 0, openReservations: 0 });
      }
      // A retried settle: unknown reservation, spend not counted again.
      expect(await w.a.settle(id, { eventId: `${id}-ev`, amountMicros: 4_321, eventTime: NOW + 10, scopes })).toBe('unknown');
      // The same event arriving through ingest is a duplicate too.
      expect(await w.b.record(`${id}-ev`, scopes, 4_321, NOW + 10)).toBe(false);
      expect((await w.a.snapshot(scopes[1], NOW)).dayMicros).toBe(4_321);
    });

    it('an event recorded first (ingest) is not counted again by settle, which still releases', async () => {
      const { scopes } = fresh();
      const caps = scopes.map((scope) => ({ scope, caps: OPEN }));
      const id = `${scopes[2]}-res2`;
      await w.a.reserve({ reservationId: id, scopes: caps, amountMicros: 900, now: NOW, ttlMs: 60_000 });
      expect(await w.a.record(`${id}-ev`, scopes, 800, NOW)).toBe(true);
      expect(await w.b.settle(id, { eventId: `${id}-ev`, amountMicros: 800, eventTime: NOW, scopes })).toBe('settled');
      expect(await w.a.snapshot(scopes[2], NOW)).toMatchObject({ dayMicros: 800, reservedMicros: 0, openReservations: 0 });
    });

    it('a duplicate reservationId returns the existing reservation and reserves nothing more', async () => {
      const { scopes } = fresh();
      const caps = [{ scope: scopes[1], caps: OPEN }];
      const r1 = await w.a.reserve({ reservationId: `${scopes[1]}-dup`, scopes: caps, amountMicros: 10, now: NOW, ttlMs: 5_000 });
      const r2 = await w.b.reserve({ reservationId: `${scopes[1]}-dup`, scopes: caps, amountMicros: 10, now: NOW + 100, ttlMs: 5_000 });
      expect(r2).toEqual(r1);
      expect((await w.a.snapshot(scopes[1], NOW)).reservedMicros).toBe(10);
    });

    it('expire releases overdue reservations and returns each exactly once, across two processes', async () => {
      const { scopes } = fresh();
      // A private time range so other tests' reservations are not due.
      const base = NOW - 1_000 * DAY_MS;
      const caps = scopes.slice(1).map((scope) => ({ scope, caps: OPEN }));
      const ids: string[] = [];
      for (let i = 0; i < 60; i++) {
        const id = `${scopes[2]}-x${i}`;
        ids.push(id);
        await (i % 2 ? w.a : w.b).reserve({ reservationId: id, scopes: caps, amountMicros: 3, now: base + i, ttlMs: 10 });
      }
      // Not yet due: reservation 59 expires at base + 69.
      const keep = `${scopes[2]}-keep`;
      await w.a.reserve({ reservationId: keep, scopes: caps, amountMicros: 1, now: base + 60, ttlMs: 1_000 });
      const [ea, eb] = await Promise.all([w.a.expire(base + 69), w.b.expire(base + 69)]);
      const got = [...ea, ...eb].filter((e) => e.reservationId.startsWith(scopes[2]));
      expect(got.map((e) => e.reservationId).sort()).toEqual([...ids].sort());
      const one = got.find((e) => e.reservationId === ids[5]);
      expect(one).toEqual({ reservationId: ids[5], scopes: [scopes[1], scopes[2]], amountMicros: 3, expiresAt: base + 15 });
      expect(await w.a.expire(base + 69)).toEqual([]);
      expect(await w.b.snapshot(scopes[1], base)).toMatchObject({ reservedMicros: 1, openReservations: 1 });
      // An expired reservation settles as unknown, and its spend is still recorded once.
      expect(await w.a.settle(ids[0]!, { eventId: `${ids[0]}-ev`, amountMicros: 2, eventTime: base, scopes: [scopes[1]] })).toBe('unknown');
      expect((await w.b.snapshot(scopes[1], base)).dayMicros).toBe(2);
    });

    it('of many reservations due in one second, the settled are never expired and the rest expire exactly once', async () => {
      const { scopes } = fresh();
      const base = NOW - 1_100 * DAY_MS;
      const caps = scopes.slice(1).map((scope) => ({ scope, caps: OPEN }));
      const ids: string[] = [];
      // 300 due within one second; 250 of them settled (in an order other than they were made), 50 left open.
      for (let i = 0; i < 300; i++) {
        const id = `${scopes[2]}-m${i}`;
        ids.push(id);
        await w.a.reserve({ reservationId: id, scopes: caps, amountMicros: 2, now: base + i, ttlMs: 100 });
      }
      const settled = ids.filter((_, i) => i % 6 !== 5).reverse();
      for (const id of settled) expect(await (id.length % 2 ? w.a : w.b).settle(id, { eventId: `${id}-ev`, amountMicros: 1, eventTime: base, scopes: [scopes[2]] })).toBe('settled');
      expect(await w.b.snapshot(scopes[1], base)).toMatchObject({ reservedMicros: 100, openReservations: 50 });
      const [ea, eb] = await Promise.all([w.a.expire(base + 999), w.b.expire(base + 999)]);
      const got = [...ea, ...eb].filter((e) => e.reservationId.startsWith(`${scopes[2]}-m`)).map((e) => e.reservationId);
      expect(got.sort()).toEqual(ids.filter((_, i) => i % 6 === 5).sort());
      expect(await w.a.expire(base + 999)).toEqual([]);
      expect(await w.a.snapshot(scopes[2], base)).toMatchObject({ reservedMicros: 0, openReservations: 0, dayMicros: 250 });
    });

    it('checks a frozen scope list like any other', async () => {
      const { scopes } = fresh();
      const bad = Object.freeze([Object.freeze({ scope: 'tenants:x', caps: Object.freeze({ ...OPEN }) })]);
      await expect(w.a.reserve({ reservationId: `${scopes[2]}-f1`, scopes: bad, amountMicros: 1, now: NOW, ttlMs: 10 })).rejects.toMatchObject({ field: 'scopes[0].scope' });
      const good = Object.freeze([Object.freeze({ scope: scopes[2], caps: Object.freeze({ ...OPEN }) })]);
      expect(await w.a.reserve({ reservationId: `${scopes[2]}-f2`, scopes: good, amountMicros: 1, now: NOW, ttlMs: 10 })).toMatchObject({ ok: true });
      // Checked once, then remembered: the same list again is still taken, and a bad amount still refused.
      expect(await w.a.reserve({ reservationId: `${scopes[2]}-f3`, scopes: good, amountMicros: 1, now: NOW, ttlMs: 10 })).toMatchObject({ ok: true });
      await expect(w.a.reserve({ reservationId: `${scopes[2]}-f4`, scopes: good, amountMicros: 0, now: NOW, ttlMs: 10 })).rejects.toMatchObject({ field: 'amountMicros' });
    });

    it('rejects bad input naming the field, and stores nothing', async () => {
      const { scopes } = fresh();
      const caps = [{ scope: scopes[1], caps: OPEN }];
      await expect(w.a.reserve({ reservationId: 'x', scopes: caps, amountMicros: 0, now: NOW, ttlMs: 10 })).rejects.toMatchObject({ code: 'FORGE_ERR_LEDGER_INPUT', field: 'amountMicros' });
      await expect(w.a.reserve({ reservationId: 'x', scopes: [{ scope: 'tenants:x', caps: OPEN }], amountMicros: 1, now: NOW, ttlMs: 10 })).rejects.toMatchObject({ field: 'scopes[0].scope' });
      await expect(w.a.reserve({ reservationId: 'x', scopes: [{ scope: scopes[1], caps: { ...OPEN, runCap: 1.5 } }], amountMicros: 1, now: NOW, ttlMs: 10 })).rejects.toMatchObject({ field: 'scopes[0].caps.runCap' });
      await expect(w.a.record('ev', [scopes[1]], -5, NOW)).rejects.toMatchObject({ field: 'amountMicros' });
      await expect(w.a.settle('', { eventId: 'e', amountMicros: 1, eventTime: NOW, scopes: [scopes[1]] })).rejects.toMatchObject({ field: 'reservationId' });
      expect(await w.a.snapshot(scopes[1], NOW)).toEqual({ dayMicros: 0, weekMicros: 0, runMicros: 0, reservedMicros: 0, openReservations: 0 });
    });

    it('1,000 concurrent reserves against one cap admit at most cap + one amount (split over both processes)', async () => {
      const { tenant, scopes } = fresh();
      const cap = 1_000_000;
      const amount = 7_000;
      const caps = [
        { scope: scopes[0], caps: OPEN },
        { scope: `tenant:${tenant}`, caps: { dayHard: cap, weekHard: BIG, runCap: BIG } },
        { scope: scopes[2], caps: OPEN },
      ];
      // Some spend already settled today counts toward the cap.
      await w.a.record(`${tenant}-pre`, [scopes[1]], 300_000, NOW);
      const results = await Promise.all(
        Array.from({ length: 1_000 }, (_, i) =>
          (i % 2 ? w.a : w.b).reserve({ reservationId: `${tenant}-c${i}`, scopes: caps, amountMicros: amount, now: NOW, ttlMs: 60_000 }),
        ),
      );
      const admitted = results.filter((r) => r.ok).length;
      const spent = 300_000 + admitted * amount;
      expect(spent).toBeLessThan(cap + amount);
      expect(spent).toBeGreaterThanOrEqual(cap);
      expect((await w.a.snapshot(scopes[1], NOW)).reservedMicros).toBe(admitted * amount);
      expect((await w.b.snapshot(scopes[2], NOW)).openReservations).toBe(admitted);
    });
  });
}

ledgerContract('in-process', async () => {
  const l = new InProcessLedger();
  return { a: l, b: l, close: () => l.close() };
});

let redis: RedisServer;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis?.stop();
});

ledgerContract('redis (two RedisLedger instances, separate connections)', async () => {
  const keyPrefix = freshPrefix('ledger');
  const a = new RedisLedger({ url: redis.url, keyPrefix });
  const b = new RedisLedger({ url: redis.url, keyPrefix });
  await Promise.all([a.ready(), b.ready()]);
  return {
    a,
    b,
    close: async () => {
      await Promise.all([a.close(), b.close()]);
    },
  };
});
