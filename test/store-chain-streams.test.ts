import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlSnapshots, RedisWriterSlot } from '../guard/index.ts';
import { openStore, type CostEvent, type GuardrailEventInput, type Store } from '../store/index.ts';
import { expectedOf, flat, freshTenant, makeEvent, tempDataDir } from './helpers/store-events.ts';
import { freshPrefix, startRedis, type RedisServer } from './helpers/redis.ts';

// Several writer processes on one tenant: each appends on a stream of its own (a writer slot leased in a real
// Redis), so every stream's chain verifies, totals are exact and no seq is taken twice. The two writers here
// are two independent stores (own writer, own guardrail log, own connection) on one embedded data directory:
// two OS processes cannot share the embedded engine, and a ClickHouse server is what several processes share.
const tmp = tempDataDir('forge-chain-streams');
const T0 = Date.UTC(2026, 2, 2);
const RANGE = { from: T0 - 1, to: T0 + 86_400_000 };
let redis: RedisServer;
const closers: Array<() => Promise<void>> = [];

beforeAll(async () => {
  redis = await startRedis();
}, 30_000);
afterAll(async () => {
  for (const c of closers.splice(0).reverse()) await c().catch(() => undefined);
  await redis?.stop();
  tmp.remove();
});

/** A writer process: its slot claimed in Redis, its store appending on that slot's stream. */
async function writerProcess(prefix: string, opts: { ttlMs?: number } = {}): Promise<{ slot: RedisWriterSlot; store: Store; stop(): Promise<void> }> {
  const slot = await RedisWriterSlot.claim({ url: redis.url, keyPrefix: prefix, ...opts });
  const store = await openStore({ dataDir: tmp.dir, stream: () => slot.stream, writer: { flushIntervalMs: 1, maxBatchRows: 50 } });
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await store.close();
    await slot.close();
  };
  closers.push(stop);
  return { slot, store, stop };
}

const events = (tenantId: string, from: number, to: number): CostEvent[] => Array.from({ length: to - from }, (_, k) => makeEvent(from + k, { tenantId, eventTime: T0 + (from + k) * 1000 }));
const guardEvent = (tenant: string, i: number): GuardrailEventInput => ({
  eventId: `${tenant}-g${i}`,
  at: T0 + i * 1000,
  kind: 'state_change',
  scope: i % 3 === 0 ? `run:${tenant}/r${i}` : `tenant:${tenant}`,
  state: i % 2 === 0 ? 'WARNING' : 'NORMAL',
  previous: i % 2 === 0 ? 'NORMAL' : 'WARNING',
  seq: i,
  reason: `change ${i}`,
});

/** Both processes write the tenant's events concurrently, interleaved in small writes; each event once. */
async function writeConcurrently(a: Store, b: Store, tenant: string, from: number, to: number): Promise<void> {
  const jobs: Array<Promise<unknown>> = [];
  for (let i = from; i < to; i += 7) {
    const w = i % 2 === 0 ? a : b;
    jobs.push(w.writer.write(events(tenant, i, Math.min(to, i + 7))));
    jobs.push(w.appendGuardrailEvents([guardEvent(tenant, i)]));
  }
  await Promise.all(jobs);
}

async function seqsTakenTwice(store: Store, table: 'cost_events' | 'guardrail_events', tenant: string): Promise<number> {
  const seq = table === 'cost_events' ? 'seq' : 'chain_seq';
  const rs = await store.client.query({
    query: `SELECT count() FROM (SELECT stream, ${seq} FROM ${store.database}.${table} WHERE tenant_id = {t:String} AND ${seq} > 0 GROUP BY stream, ${seq} HAVING count() > 1)`,
    query_params: { t: tenant },
    format: 'JSONCompactEachRow',
  });
  return Number((await rs.json<[string]>())[0]?.[0]);
}

describe('rows written before streams', () => {
  it('are stream 0: a log written before the stream column (an upgrade) still verifies, and its heads keep naming it', async () => {
    // First in the file: the column is dropped and added back on the table every test here shares.
    {
      const store = await openStore({ dataDir: tmp.dir });
      const t = freshTenant('old');
      await store.writer.write(events(t, 0, 30));
      await store.appendGuardrailEvents([guardEvent(t, 1), guardEvent(t, 2)]);
      // Back to the schema before streams: no stream column, migration 0020 not applied.
      for (const table of ['cost_events', 'guardrail_events']) await store.client.command({ query: `ALTER TABLE ${store.database}.${table} DROP COLUMN stream`, clickhouse_settings: { mutations_sync: '2' } });
      await store.client.command({ query: `DELETE FROM ${store.database}.schema_migrations WHERE version = 20`, clickhouse_settings: { mutations_sync: '2' } });
      await store.close();
      // The upgrade: the column comes back as 0 on every row, the chains as they were hashed.
      const again = await openStore({ dataDir: tmp.dir });
      expect(again.migrated.map((m) => m.version)).toEqual([20]);
      const v = await again.verifyStreams({ log: 'cost_events', tenantId: t });
      expect(v).toMatchObject({ ok: true, checked: 30, streams: [{ stream: 0, ok: true, recordedHead: { seq: 30 } }] });
      expect(v.streams).toHaveLength(1);
      expect(await again.verify({ log: 'guardrail_events', tenantId: t })).toMatchObject({ ok: true, stream: 0, checked: 2, recordedHead: { seq: 2 } });
      expect((await again.chainHeads({ tenantId: t })).map((h) => [h.log, h.tenantId, h.stream, h.seq])).toEqual([
        ['cost_events', t, 0, 30],
        ['guardrail_events', t, 0, 2],
      ]);
      // The single process continues stream 0.
      await again.writer.write(events(t, 30, 40));
      expect(await again.verifyStreams({ log: 'cost_events', tenantId: t })).toMatchObject({ ok: true, checked: 40, streams: [{ stream: 0 }] });
      await again.close();
    }
  });
});

describe('hash chains with several writer processes on one tenant', () => {
  it('two processes writing one tenant concurrently: every stream verifies, totals exact, no seq taken twice; a restart takes its slot back', async () => {
    const prefix = freshPrefix('streams');
    const t = freshTenant('cs');
    const a = await writerProcess(prefix);
    const b = await writerProcess(prefix);
    expect([a.slot.slot, b.slot.slot]).toEqual([0, 1]);

    await writeConcurrently(a.store, b.store, t, 0, 700);
    for (const log of ['cost_events', 'guardrail_events'] as const) {
      const v = await a.store.verifyStreams({ log, tenantId: t });
      expect(v.ok, JSON.stringify(v.streams.filter((s) => !s.ok))).toBe(true);
      // Both processes' streams, each a chain of its own rows, each reaching its recorded head.
      expect(v.streams.map((s) => s.stream)).toEqual([0, 1]);
      for (const s of v.streams) expect(s).toMatchObject({ ok: true, pastHead: 0, recordedHead: { seq: s.ok ? s.toSeq : -1 } });
      expect(v.checked).toBe(log === 'cost_events' ? 700 : 100);
      expect(await seqsTakenTwice(a.store, log, t)).toBe(0);
    }
    expect(flat(await b.store.totals({ tenantId: t }, RANGE))).toEqual(expectedOf(events(t, 0, 700)));
    // The audit's listing names each event's chain: (tenant, stream) at seq, each position once.
    const listed = await a.store.listEvents({ tenantId: t }, RANGE);
    expect(listed).toHaveLength(700);
    expect(new Set(listed.map((e) => e.stream))).toEqual(new Set([0, 1]));
    expect(new Set(listed.map((e) => `${e.stream}/${e.seq}`)).size).toBe(700);
    const heads = await a.store.chainHeads({ log: 'cost_events', tenantId: t });
    expect(heads.map((h) => [h.tenantId, h.stream])).toEqual([
      [t, 0],
      [t, 1],
    ]);

    // A redeploy of process b: a clean stop releases its slot and the new process takes it back, continuing
    // the stream's chain from its head (read from the store: nothing cached survives the restart).
    const bSeq = heads[1]!.seq;
    await b.stop();
    const b2 = await writerProcess(prefix);
    expect(b2.slot.slot).toBe(1);
    await writeConcurrently(a.store, b2.store, t, 700, 1000);
    // Replays through either process are recognised whichever stream holds the event: nothing counted twice.
    expect((await b2.store.writer.write(events(t, 0, 50))).stored).toBe(0);
    const v = await b2.store.verifyStreams({ log: 'cost_events', tenantId: t });
    expect(v.ok, JSON.stringify(v.streams.filter((s) => !s.ok))).toBe(true);
    expect(v.checked).toBe(1000);
    const s1 = v.streams.find((s) => s.stream === 1);
    expect(s1?.ok && s1.toSeq).toBeGreaterThan(bSeq);
    expect((await b2.store.verifyStreams({ log: 'guardrail_events', tenantId: t })).ok).toBe(true);
    expect(flat(await a.store.totals({ tenantId: t }, RANGE))).toEqual(expectedOf(events(t, 0, 1000)));
    await b2.stop();
    await a.stop();
  }, 120_000);

  it('without a stream each, two writers on one tenant take the same seqs and the chain breaks (what the slots prevent)', async () => {
    const t = freshTenant('cs');
    const a = await openStore({ dataDir: tmp.dir, writer: { flushIntervalMs: 1, maxBatchRows: 50 } });
    const b = await openStore({ dataDir: tmp.dir, writer: { flushIntervalMs: 1, maxBatchRows: 50 } });
    closers.push(() => a.close(), () => b.close());
    await writeConcurrently(a, b, t, 0, 350);
    const v = await a.verifyStreams({ log: 'cost_events', tenantId: t });
    expect(v.streams.map((s) => s.stream)).toEqual([0]);
    expect(v.ok).toBe(false);
    expect(await seqsTakenTwice(a, 'cost_events', t)).toBeGreaterThan(0);
  }, 120_000);

  it('a crashed process leaves its slot leased until the lease runs out: the restart takes another, and later the freed one', async () => {
    const prefix = freshPrefix('crash');
    const a = await RedisWriterSlot.claim({ url: redis.url, keyPrefix: prefix, ttlMs: 400 });
    const b = await RedisWriterSlot.claim({ url: redis.url, keyPrefix: prefix, ttlMs: 400 });
    closers.push(() => a.close(), () => b.close());
    expect([a.stream, b.stream]).toEqual([0, 1]);
    // Renewals keep the lease past its TTL.
    await new Promise((r) => setTimeout(r, 700));
    expect(a.stream).toBe(0);
    // b "crashes": its renewals stop, its lease is not released.
    const raw = new Redis(redis.url);
    closers.push(async () => void raw.disconnect());
    await b.close().catch(() => undefined);
    await raw.set(`${prefix}writer-slot:1`, 'a crashed process', 'PX', 400);
    const c = await RedisWriterSlot.claim({ url: redis.url, keyPrefix: prefix, ttlMs: 400 });
    closers.push(() => c.close());
    expect(c.stream).toBe(2);
    await new Promise((r) => setTimeout(r, 500));
    const d = await RedisWriterSlot.claim({ url: redis.url, keyPrefix: prefix, ttlMs: 400 });
    closers.push(() => d.close());
    expect(d.stream).toBe(1);
  }, 30_000);

  it('a process whose slot another took (it stalled past its lease) moves to a new slot, and its appends with it', async () => {
    const prefix = freshPrefix('stall');
    const t = freshTenant('cs');
    const errors: unknown[] = [];
    const slot = await RedisWriterSlot.claim({ url: redis.url, keyPrefix: prefix, ttlMs: 60_000, heartbeatMs: 60_000, onError: (e) => errors.push(e) });
    closers.push(() => slot.close());
    const store = await openStore({ dataDir: tmp.dir, stream: () => slot.stream, writer: { flushIntervalMs: 1 } });
    closers.push(() => store.close());
    await store.writer.write(events(t, 0, 20));
    await store.appendGuardrailEvents([guardEvent(t, 1)]);
    // Another process holds slot 0 now.
    const raw = new Redis(redis.url);
    closers.push(async () => void raw.disconnect());
    await raw.set(`${prefix}writer-slot:0`, 'another process', 'PX', 60_000);
    await slot.heartbeat();
    expect(slot.stream).toBe(1);
    expect(String(errors[0])).toMatch(/slot 0 is held by another process.*slot 1/);
    await store.writer.write(events(t, 20, 40));
    await store.appendGuardrailEvents([guardEvent(t, 2)]);
    for (const log of ['cost_events', 'guardrail_events'] as const) {
      const v = await store.verifyStreams({ log, tenantId: t });
      expect(v.ok).toBe(true);
      expect(v.streams.map((s) => [s.stream, s.checked])).toEqual(log === 'cost_events' ? [[0, 20], [1, 20]] : [[0, 1], [1, 1]]);
    }
  }, 30_000);

  it('a lease not renewed for its whole TTL (Redis away) refuses appends rather than risk a second writer on the stream', async () => {
    let now = Date.now();
    const slot = await RedisWriterSlot.claim({ url: redis.url, keyPrefix: freshPrefix('away'), ttlMs: 1000, heartbeatMs: 60_000, now: () => now });
    closers.push(() => slot.close());
    expect(slot.stream).toBe(0);
    now += 1000;
    expect(() => slot.stream).toThrow(/lease not renewed/);
    await slot.heartbeat();
    expect(slot.stream).toBe(0);
  });

  it('the snapshot watermark covers every stream: a start from it plus the log since is exact', async () => {
    const prefix = freshPrefix('snap');
    const t = freshTenant('cs');
    const a = await writerProcess(prefix);
    const b = await writerProcess(prefix);
    await writeConcurrently(a.store, b.store, t, 0, 400);
    const snaps = new ControlSnapshots(a.store);
    await snaps.load();
    const taken = await snaps.take();
    const { snapshot } = await a.store.latestControlSnapshot();
    expect(snapshot?.id).toBe(taken?.id);
    // Keyed by stream: the tenant id for stream 0 (as before streams), `<tenant>/1` for process b's.
    expect(snapshot?.watermark.get(t)).toBeGreaterThan(0);
    expect(snapshot?.watermark.get(`${t}/1`)).toBeGreaterThan(0);
    // More on both streams, and process b restarted on its slot.
    await b.stop();
    const b2 = await writerProcess(prefix);
    await writeConcurrently(a.store, b2.store, t, 400, 600);
    const restarted = new ControlSnapshots(b2.store);
    const loaded = await restarted.load();
    expect(loaded).toMatchObject({ origin: 'snapshot', snapshotId: taken?.id, streamsReread: [] });
    const held = (await restarted.runDays(T0 + 3_600_000)).filter((g) => g.tenantId === t);
    const full = (await b2.store.runDayTotals(RANGE)).filter((g) => g.tenantId === t);
    expect(held.reduce((n, g) => n + g.totalMicros, 0)).toBe(full.reduce((n, g) => n + g.totalMicros, 0));
    expect(held.reduce((n, g) => n + g.tasks, 0)).toBe(600);
    expect((await restarted.verify()).differing).toEqual([]);
    await b2.stop();
    await a.stop();
  }, 120_000);
});
