import { afterAll, describe, expect, it } from 'vitest';
import { isStoreError, openStore, type Store, type WriterOptions } from '../store/index.ts';
import { insertProbe } from './helpers/store-faults.ts';
import { expectedOf, flat, freshTenant, makeEvent, tempDataDir } from './helpers/store-events.ts';

const tmp = tempDataDir('forge-store-writer');
const T0 = Date.UTC(2025, 3, 1);
const RANGE = { from: T0 - 1, to: T0 + 86_400_000 };
const opened: Array<{ store: Store; probe: ReturnType<typeof insertProbe> }> = [];

afterAll(async () => {
  for (const { store, probe } of opened) {
    probe.gate.open();
    await store.close();
  }
  tmp.remove();
});

async function open(writer: WriterOptions, errors: unknown[] = []) {
  const probe = insertProbe();
  const store = await openStore({ dataDir: tmp.dir, wrapConnection: probe.wrap, onError: (e) => errors.push(e), writer: { retryBaseMs: 1, retryMaxMs: 5, ...writer } });
  opened.push({ store, probe });
  return { store, probe };
}

const events = (tenantId: string, n: number, start = 0) => Array.from({ length: n }, (_, k) => makeEvent(start + k, { tenantId, eventTime: T0 + (start + k) * 1000 }));

/** Waits (no deadline of its own: the test timeout bounds it) until cond() holds. */
async function until(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 2));
}

/** Settles to 'pending' when the promise has not settled after the event loop turns a few times. */
async function state(p: Promise<unknown>): Promise<'pending' | 'resolved' | 'rejected'> {
  let s: 'pending' | 'resolved' | 'rejected' = 'pending';
  p.then(
    () => (s = 'resolved'),
    () => (s = 'rejected'),
  );
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  return s;
}

describe('batch writer', () => {
  it('resolves a write only once its events are committed', async () => {
    const { store, probe } = await open({ flushIntervalMs: 1 });
    const t = freshTenant();
    probe.gate.close();
    const w = store.writer.write(events(t, 5));
    expect(await state(w)).toBe('pending');
    expect((await store.totals({ tenantId: t }, RANGE)).tasks).toBe(0);
    probe.gate.open();
    expect(await w).toMatchObject({ stored: 5, duplicates: 0 });
    expect((await store.totals({ tenantId: t }, RANGE)).tasks).toBe(5);
  });

  it('flushes on size without waiting for the interval, and on close', async () => {
    const { store, probe } = await open({ flushIntervalMs: 3_600_000, maxBatchRows: 100 });
    const t = freshTenant();
    expect(await store.writer.write(events(t, 100))).toMatchObject({ stored: 100, duplicates: 0 });
    expect(probe.batches).toEqual([100]);
    const small = store.writer.write(events(t, 7, 100));
    expect(await state(small)).toBe('pending');
    await store.close();
    expect(await small).toMatchObject({ stored: 7, duplicates: 0 });
    expect(probe.batches).toEqual([100, 7]);
    await expect(store.writer.write(events(t, 1, 200))).rejects.toSatisfy((e: unknown) => isStoreError(e, 'FORGE_ERR_STORE_CLOSED'));
  });

  it('never runs two flushes at once and keeps batches at the size limit', async () => {
    const { store, probe } = await open({ flushIntervalMs: 1, maxBatchRows: 50, maxBufferedEvents: 10_000 });
    const t = freshTenant();
    probe.gate.close();
    const writes = Array.from({ length: 40 }, (_, i) => store.writer.write(events(t, 10, i * 10)));
    await until(() => probe.active === 1);
    probe.gate.open();
    await Promise.all(writes);
    expect(probe.maxConcurrent).toBe(1);
    expect(probe.batches.reduce((a, b) => a + b, 0)).toBe(400);
    expect(Math.max(...probe.batches)).toBeLessThanOrEqual(50);
    expect(await store.verify({ tenantId: t })).toMatchObject({ ok: true, checked: 400 });
  });

  it('pushes back when the buffer is full: write fails with a code after the timeout, storing nothing', async () => {
    const { store, probe } = await open({ flushIntervalMs: 1, maxBatchRows: 1000, maxBufferedEvents: 30, backpressureTimeoutMs: 20 });
    const t = freshTenant();
    probe.gate.close();
    const first = store.writer.write(events(t, 30));
    await until(() => probe.active === 1);
    expect(store.writer.stats()).toMatchObject({ inFlight: 30 });
    await expect(store.writer.write(events(t, 10, 30))).rejects.toSatisfy((e: unknown) => isStoreError(e, 'FORGE_ERR_STORE_BACKPRESSURE'));
    probe.gate.open();
    expect(await first).toMatchObject({ stored: 30, duplicates: 0 });
    await store.writer.flush();
    const listed = await store.listEvents({ tenantId: t }, RANGE);
    expect(listed.length).toBe(30);
    expect(listed.some((e) => e.eventId === 'ev-30')).toBe(false);
  });

  it('pushes back when the buffer is full: write waits for space, then goes through', async () => {
    const { store, probe } = await open({ flushIntervalMs: 1, maxBatchRows: 1000, maxBufferedEvents: 30, backpressureTimeoutMs: 60_000 });
    const t = freshTenant();
    probe.gate.close();
    const first = store.writer.write(events(t, 30));
    await until(() => probe.active === 1);
    const waiting = store.writer.write(events(t, 10, 30));
    expect(store.writer.stats()).toMatchObject({ waiting: 1, queued: 0, inFlight: 30 });
    expect(await state(waiting)).toBe('pending');
    probe.gate.open();
    expect(await first).toMatchObject({ stored: 30, duplicates: 0 });
    expect(await waiting).toMatchObject({ stored: 10, duplicates: 0 });
    expect(probe.batches).toEqual([30, 10]);
  });

  it('retries transient errors with backoff; a lost reply does not double count or double chain', async () => {
    const errors: unknown[] = [];
    const { store, probe } = await open({ flushIntervalMs: 1 }, errors);
    const t = freshTenant();
    probe.failBefore = 2;
    const a = events(t, 20);
    expect(await store.writer.write(a)).toMatchObject({ stored: 20, duplicates: 0 });
    probe.failAfter = 1;
    const b = events(t, 20, 20);
    // The insert landed but the reply was lost: the retry finds the rows and reports them as stored once.
    expect(await store.writer.write(b)).toMatchObject({ stored: 20, duplicates: 0 });
    expect(store.writer.stats().retries).toBe(3);
    expect(errors).toEqual([]);
    expect(flat(await store.totals({ tenantId: t }, RANGE))).toEqual(expectedOf([...a, ...b]));
    expect(await store.verify({ tenantId: t })).toMatchObject({ ok: true, checked: 40 });
  });

  it('fails a write with a code when retries run out or the error is permanent; a replay then stores it once', async () => {
    const errors: unknown[] = [];
    const { store, probe } = await open({ flushIntervalMs: 1, maxRetries: 2 }, errors);
    const t = freshTenant();
    const a = events(t, 10);
    probe.failBefore = 3;
    await expect(store.writer.write(a)).rejects.toSatisfy((e: unknown) => isStoreError(e, 'FORGE_ERR_STORE_WRITE_FAILED'));
    probe.failPermanent = 1;
    await expect(store.writer.write(a)).rejects.toSatisfy((e: unknown) => isStoreError(e, 'FORGE_ERR_STORE_WRITE_FAILED'));
    expect(errors.length).toBe(2);
    expect(store.writer.stats()).toMatchObject({ failedFlushes: 2, retries: 2 });
    expect((await store.totals({ tenantId: t }, RANGE)).tasks).toBe(0);
    expect(await store.writer.write(a)).toMatchObject({ stored: 10, duplicates: 0 });
    expect(await store.writer.write(a)).toMatchObject({ stored: 0, duplicates: 10 });
    expect(await store.verify({ tenantId: t })).toMatchObject({ ok: true, checked: 10 });
  });

  it('finds duplicates by reading the stored rows of the batch\'s time span, and by key when that span holds many', async () => {
    const { store, probe } = await open({ flushIntervalMs: 1 });
    // The existence check's lookup by key (not the id index's, nor the body comparison of a resend).
    const keyed = () => probe.queries.filter((q) => /^SELECT tenant_id, event_id FROM \w+\.cost_events\s/.test(q)).length;
    const t = freshTenant();
    const stored = events(t, 3000);
    expect(await store.writer.write(stored)).toMatchObject({ stored: 3000, duplicates: 0 });
    // A narrow span (a few stored rows in it): read back and matched. Event 100 again, and a new one at its time.
    const near = [stored[100]!, makeEvent(5000, { tenantId: t, eventTime: T0 + 100_000 })];
    expect(await store.writer.write(near)).toMatchObject({ stored: 1, duplicates: 1, fresh: [false, true] });
    expect(keyed()).toBe(0);
    // A span holding all 3,000 stored rows (more than the range check reads): looked up by key instead.
    const wide = [stored[0]!, makeEvent(5001, { tenantId: t, eventTime: T0 + 1500 }), stored[2999]!, makeEvent(5002, { tenantId: t, eventTime: T0 + 2_999_000 })];
    expect(await store.writer.write(wide)).toMatchObject({ stored: 2, duplicates: 2, fresh: [false, true, false, true] });
    expect(keyed()).toBe(1);
    // Another tenant's rows in the span are not this tenant's duplicates.
    const other = freshTenant();
    expect(await store.writer.write([{ ...stored[5]!, tenantId: other }])).toMatchObject({ stored: 1, duplicates: 0 });
    expect((await store.totals({ tenantId: t }, { from: T0 - 1, to: T0 + 4_000_000 })).tasks).toBe(3000 + 1 + 2);
    expect(await store.verify({ tenantId: t })).toMatchObject({ ok: true, checked: 3003 });
  });

  it('encodes a large write a slice at a time: later writes keep their place, a bad event stores nothing, close waits for it', async () => {
    const { store } = await open({ flushIntervalMs: 1 });
    const t = freshTenant();
    const large = events(t, 2500);
    const small = events(t, 5, 2500);
    const [a, b] = await Promise.all([store.writer.write(large), store.writer.write(small)]);
    expect(a).toMatchObject({ stored: 2500, duplicates: 0 });
    expect(b).toMatchObject({ stored: 5, duplicates: 0 });
    // The chain has them in the order written: every event of the large write before the small one's.
    const listed = await store.listEvents({ tenantId: t }, RANGE, { limit: 10_000 });
    const seqOf = new Map(listed.map((e) => [e.eventId, e.seq]));
    expect(Math.max(...large.map((e) => seqOf.get(e.eventId)!))).toBeLessThan(Math.min(...small.map((e) => seqOf.get(e.eventId)!)));
    const bad = events(freshTenant(), 2500);
    bad[1800] = { ...bad[1800]!, tenantId: 'no spaces allowed' };
    await expect(store.writer.write(bad)).rejects.toMatchObject({ code: 'FORGE_ERR_STORE_INVALID', field: 'events[1800].tenantId' });
    expect((await store.totals({ tenantId: bad[0]!.tenantId }, RANGE)).tasks).toBe(0);
    const pending = store.writer.write(events(t, 1500, 3000));
    await store.writer.close();
    expect(await pending).toMatchObject({ stored: 1500, duplicates: 0 });
    await expect(store.writer.write(events(t, 1))).rejects.toMatchObject({ code: 'FORGE_ERR_STORE_CLOSED' });
    expect(await store.verify({ tenantId: t })).toMatchObject({ ok: true, checked: 4005 });
  });

  it('sends the next batch\'s existence check right behind an insert; a batch failing midway leaves the others exactly-once', async () => {
    const { store, probe } = await open({ flushIntervalMs: 1, maxBatchRows: 10, maxRetries: 1 });
    const t = freshTenant();
    const a = events(t, 10);
    const b = [...events(t, 6, 10), { ...events(t, 1, 16)[0]!, eventId: 'poison' }, ...a.slice(0, 3)];
    const c = [...events(t, 8, 20), b[0]!, b[1]!];
    probe.failWhen = (rows) => rows.includes('"poison"');
    const [ra, rb, rc] = await Promise.allSettled([store.writer.write(a), store.writer.write(b), store.writer.write(c)]);
    expect(ra).toMatchObject({ status: 'fulfilled', value: { stored: 10, duplicates: 0 } });
    expect(rb).toMatchObject({ status: 'rejected', reason: { code: 'FORGE_ERR_STORE_WRITE_FAILED' } });
    // b failed: its events are not in the log, so c's copies of two of them are c's own.
    expect(rc).toMatchObject({ status: 'fulfilled', value: { stored: 10, duplicates: 0 } });
    // a's rows went in, then the next batch's check was sent before a's head record.
    const rowsAt = probe.statements.findIndex((q) => q.startsWith('INSERT INTO') && q.includes('.cost_events '));
    const headAt = probe.statements.findIndex((q, i) => i > rowsAt && q.startsWith('INSERT INTO') && q.includes('.chain_heads'));
    expect(rowsAt).toBeGreaterThanOrEqual(0);
    expect(probe.statements.slice(rowsAt + 1, headAt).some((q) => q.includes('toUnixTimestamp64Milli(event_time) FROM'))).toBe(true);
    probe.failWhen = undefined;
    // A replay of b stores what is new to the log: not a's three, not the two c stored meanwhile.
    expect(await store.writer.write(b)).toMatchObject({ stored: 5, duplicates: 5 });
    expect(flat(await store.totals({ tenantId: t }, RANGE))).toEqual(expectedOf([...a, ...c, ...b.slice(2, 7)]));
    expect(await store.verify({ tenantId: t })).toMatchObject({ ok: true, checked: 25 });
  });

  it('rejects bad writer options by name', async () => {
    await expect(openStore({ dataDir: tmp.dir, writer: { maxBatchRows: 0 } })).rejects.toMatchObject({ code: 'FORGE_ERR_STORE_CONFIG', field: 'maxBatchRows' });
    await expect(openStore({ dataDir: tmp.dir, database: 'bad-name' })).rejects.toMatchObject({ code: 'FORGE_ERR_STORE_CONFIG', field: 'database' });
  });
});
