import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { isStoreError, openStore, type CostEvent, type Store } from '../store/index.ts';
import { insertProbe } from './helpers/store-faults.ts';
import { DAY_MS, freshTenant, HOUR_MS, makeEvent, tempDataDir } from './helpers/store-events.ts';

// An event id is unique per tenant across all time: a resend with another event time (a retry that
// re-stamps the time) or another body is refused, whatever the distance between the two times, after a
// restart too; an identical resend (priced again, ingested again) is a duplicate. Real embedded engine.

const tmp = tempDataDir('forge-store-event-ids');
const T0 = Date.UTC(2025, 5, 1);
const ALL = { from: T0 - 400 * DAY_MS, to: T0 + 400 * DAY_MS };
let store: Store | undefined;
let probe = insertProbe();

afterAll(async () => {
  probe.gate.open();
  await store?.close();
  tmp.remove();
});

/** (Re)opens the store on the same data directory: a restart, with nothing of the writer's memory kept. */
async function reopen(): Promise<Store> {
  await store?.close();
  probe = insertProbe();
  store = await openStore({ dataDir: tmp.dir, wrapConnection: probe.wrap, writer: { flushIntervalMs: 1, retryBaseMs: 1, retryMaxMs: 5 } });
  return store;
}

const events = (tenantId: string, n: number, start = 0) => Array.from({ length: n }, (_, k) => makeEvent(start + k, { tenantId, eventTime: T0 + (start + k) * 1000 }));

describe('event ids are unique per tenant across all time', () => {
  it('refuses a resend under another event time, near or a year away, and after a restart; an identical resend is a duplicate', async () => {
    let s = await reopen();
    const t = freshTenant();
    const first = events(t, 20);
    expect(await s.writer.write(first)).toMatchObject({ stored: 20, duplicates: 0, conflicts: [] });
    const before = await s.totals({ tenantId: t }, ALL);

    // Priced again and ingested later (another storage share, another ingest time): the same event.
    const repriced = { ...first[3]!, ingestTime: first[3]!.ingestTime + HOUR_MS, storageMicros: first[3]!.storageMicros + 7, totalMicros: first[3]!.totalMicros + 7 };
    expect(await s.writer.write([first[2]!, repriced])).toMatchObject({ stored: 0, duplicates: 2, fresh: [false, false], conflicts: [] });

    // Another event time: a second, a day, a year away (far outside the batch's time span).
    for (const shift of [1, DAY_MS, 365 * DAY_MS]) {
      const moved = { ...first[5]!, eventTime: first[5]!.eventTime + shift };
      expect(await s.writer.write([moved])).toEqual({ stored: 0, duplicates: 0, fresh: [false], conflicts: [{ index: 0, eventId: first[5]!.eventId, storedEventTime: first[5]!.eventTime }] });
    }
    // The same time, another amount or another task: another event.
    const more = { ...first[6]!, rliMicros: first[6]!.rliMicros + 1, totalMicros: first[6]!.totalMicros + 1 };
    const otherTask = { ...first[7]!, taskId: 'another-task' };
    expect(await s.writer.write([more, otherTask])).toMatchObject({ stored: 0, duplicates: 0, conflicts: [{ index: 0 }, { index: 1 }] });

    // A restart: the writer's memory is gone, the log and its id index answer alone.
    s = await reopen();
    const later = { ...first[9]!, eventTime: first[9]!.eventTime + 30 * DAY_MS };
    expect(await s.writer.write([later, first[9]!])).toMatchObject({ stored: 0, duplicates: 1, fresh: [false, false], conflicts: [{ index: 0, storedEventTime: first[9]!.eventTime }] });
    expect(await s.totals({ tenantId: t }, ALL)).toEqual(before);
    expect((await s.listEvents({ tenantId: t }, ALL)).length).toBe(20);
    expect(await s.verify({ tenantId: t })).toMatchObject({ ok: true, checked: 20 });
    expect(s.writer.stats()).toMatchObject({ stored: 0, duplicates: 1, conflicts: 1 });
    // Another tenant's event with the same id is its own.
    const u = freshTenant();
    expect(await s.writer.write([{ ...later, tenantId: u }])).toMatchObject({ stored: 1, conflicts: [] });
  });

  it('a batch mixing new, duplicate and conflicting ids stores the new ones only; a repeat in the batch with another body conflicts', async () => {
    const s = await reopen();
    const t = freshTenant();
    const first = events(t, 10);
    await s.writer.write(first);
    const fresh = events(t, 3, 100);
    const batch: CostEvent[] = [
      fresh[0]!,
      first[1]!, // duplicate
      { ...first[2]!, eventTime: first[2]!.eventTime - 5 * DAY_MS }, // conflict: another time
      fresh[1]!,
      { ...fresh[1]!, eventTime: fresh[1]!.eventTime + 1 }, // conflict with the batch's own fresh[1]
      fresh[1]!, // the same event twice in one batch: a duplicate
      { ...first[3]!, model: 'another-model' }, // conflict: another body
      fresh[2]!,
    ];
    const r = await s.writer.write(batch);
    expect(r).toMatchObject({ stored: 3, duplicates: 2, fresh: [true, false, false, true, false, false, false, true] });
    expect(r.conflicts.map((c) => [c.index, c.storedEventTime])).toEqual([
      [2, first[2]!.eventTime],
      [4, fresh[1]!.eventTime],
      [6, first[3]!.eventTime],
    ]);
    const rows = await s.listEvents({ tenantId: t }, ALL);
    expect(rows.length).toBe(13);
    expect(rows.find((e) => e.eventId === fresh[1]!.eventId)!.eventTime).toBe(fresh[1]!.eventTime);
    expect(await s.verify({ tenantId: t })).toMatchObject({ ok: true, checked: 13 });
    // Two writes flushed in one batch: the second is refused the same way.
    const [a, b] = await Promise.all([s.writer.write([fresh[0]!, events(t, 1, 200)[0]!]), s.writer.write([{ ...events(t, 1, 200)[0]!, eventTime: T0 - HOUR_MS }])]);
    expect(a).toMatchObject({ stored: 1, duplicates: 1 });
    expect(b).toMatchObject({ stored: 0, conflicts: [{ index: 0 }] });
  });

  it('finds ids spread over the whole index (random ids) by key, and ids of rows stored long before', async () => {
    const s = await reopen();
    const t = freshTenant();
    const stored = events(t, 3000).map((e) => ({ ...e, eventId: randomUUID() }));
    expect(await s.writer.write(stored)).toMatchObject({ stored: 3000 });
    const keyed = () => probe.queries.filter((q) => /FROM \w+\.cost_event_ids\s+WHERE tenant_id IN \{tenants:Array\(String\)\} AND event_id IN/.test(q)).length;
    const sorted = [...stored].sort((x, y) => (x.eventId < y.eventId ? -1 : 1));
    // The lowest and the highest id of the index: their range holds all 3,000 entries, more than it reads.
    const lowMoved = { ...sorted[0]!, eventTime: sorted[0]!.eventTime + 90 * DAY_MS };
    const high = { ...sorted[2999]!, eventTime: sorted[2999]!.eventTime - 90 * DAY_MS };
    expect(await s.writer.write([lowMoved, high])).toMatchObject({ stored: 0, conflicts: [{ index: 0 }, { index: 1 }] });
    expect(keyed()).toBe(1);
    // Sequential ids near each other are read as one range of the index, without a lookup by key.
    const seq = events(t, 50, 5000);
    await s.writer.write(seq);
    expect(await s.writer.write([{ ...seq[10]!, eventTime: seq[10]!.eventTime + 7 * DAY_MS }])).toMatchObject({ conflicts: [{ index: 0 }] });
    expect(keyed()).toBe(1);
    expect(await s.verify({ tenantId: t })).toMatchObject({ ok: true, checked: 3050 });
  });

  it('an insert whose reply was lost is retried exactly once; an id whose rows never landed does not block its event', async () => {
    const s = await reopen();
    const t = freshTenant();
    const [a, b] = events(t, 2);
    // The rows landed, the reply was lost: the retry finds them (stored by this write), the chain stays whole.
    probe.failAfter = 1;
    expect(await s.writer.write([a!])).toMatchObject({ stored: 1, duplicates: 0, fresh: [true] });
    expect(s.writer.stats().retries).toBe(1);
    expect(await s.writer.write([{ ...a!, eventTime: a!.eventTime + DAY_MS }])).toMatchObject({ stored: 0, conflicts: [{ index: 0 }] });
    // The ids landed, the rows failed for good: the id index holds an entry without a row.
    probe.failPermanent = 1;
    await expect(s.writer.write([b!])).rejects.toSatisfy((e: unknown) => isStoreError(e, 'FORGE_ERR_STORE_WRITE_FAILED'));
    const idRows = await s.client.query({ query: 'SELECT count() FROM forge.cost_event_ids WHERE tenant_id = {t:String} AND event_id = {id:String}', query_params: { t, id: b!.eventId }, format: 'JSONCompactEachRow' });
    expect(Number((await idRows.json<[number | string]>())[0]![0])).toBe(1);
    // The producer sends it again, re-stamped: the leftover is no event, this one is stored.
    const restamped = { ...b!, eventTime: b!.eventTime + HOUR_MS };
    expect(await s.writer.write([restamped])).toMatchObject({ stored: 1, conflicts: [] });
    // And now the first time is the conflicting one.
    expect(await s.writer.write([b!])).toMatchObject({ stored: 0, conflicts: [{ index: 0, storedEventTime: restamped.eventTime }] });
    expect(await s.verify({ tenantId: t })).toMatchObject({ ok: true, checked: 2 });
  });

  it('fills the id index from the log when the migration is applied to a store that has rows', async () => {
    let s = await reopen();
    const t = freshTenant();
    const first = events(t, 5);
    await s.writer.write(first);
    // A store from before the index: its ids are not there, and the migration not recorded.
    await s.client.command({ query: 'TRUNCATE TABLE forge.cost_event_ids' });
    await s.client.command({ query: 'DELETE FROM forge.schema_migrations WHERE version = 19' });
    s = await reopen();
    expect(await s.writer.write([{ ...first[4]!, eventTime: first[4]!.eventTime + 60 * DAY_MS }])).toMatchObject({ stored: 0, conflicts: [{ index: 0, storedEventTime: first[4]!.eventTime }] });
    expect(await s.verify({ tenantId: t })).toMatchObject({ ok: true, checked: 5 });
  });
});
