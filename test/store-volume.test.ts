import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore, type CostEvent, type Store } from '../store/index.ts';
import { DAY_MS, addExpected, emptyExpected, flat, freshTenant, makeEvent, tempDataDir, type Expected } from './helpers/store-events.ts';

// A million events through the batch writer on the real embedded engine, totalled from the log, kept across
// a restart on the same data directory, and not doubled by replays.
const N = 1_000_000;
const CHUNK = 10_000;
const NOW = Date.UTC(2025, 8, 20, 23, 59, 59, 999); // the last event lands at 23:59:59.309
const TODAY = Date.UTC(2025, 8, 20);

const tmp = tempDataDir('forge-store-volume');
let store: Store;

beforeAll(async () => {
  store = await openStore({ dataDir: tmp.dir, writer: { flushIntervalMs: 50, maxBatchRows: 50_000, maxBufferedEvents: 200_000 } });
});

afterAll(async () => {
  await store?.close();
  tmp.remove();
});

/** Event i: in time order over the 8 days ending today (~0.69 s apart), as a live stream arrives. */
function eventAt(tenantId: string, i: number): CostEvent {
  return makeEvent(i, { tenantId, eventTime: TODAY - 7 * DAY_MS + Math.floor((i * 8 * DAY_MS) / N) });
}

describe('a million events', () => {
  const tenant = freshTenant('vol');
  const perDay = new Map<string, Expected>();
  const all = emptyExpected();

  it('are written through the batch writer and totalled exactly', async () => {
    const inFlight = new Set<Promise<unknown>>();
    let stored = 0;
    for (let off = 0; off < N; off += CHUNK) {
      const chunk: CostEvent[] = new Array(CHUNK);
      for (let k = 0; k < CHUNK; k++) {
        const e = eventAt(tenant, off + k);
        chunk[k] = e;
        addExpected(all, e);
        const d = new Date(e.eventTime).toISOString().slice(0, 10);
        const acc = perDay.get(d) ?? emptyExpected();
        addExpected(acc, e);
        perDay.set(d, acc);
      }
      const p = store.writer.write(chunk).then((r) => {
        stored += r.stored;
        inFlight.delete(p);
      });
      inFlight.add(p);
      if (inFlight.size >= 12) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
    expect(stored).toBe(N);

    const roll = await store.scopeRollup({ tenantId: tenant }, NOW);
    expect(roll.days.map((d) => [d.day, flat(d)])).toEqual([...perDay.entries()].sort(([a], [b]) => a.localeCompare(b)));
    expect(flat(roll.run)).toEqual(all);
    expect(all.tasks).toBe(N);
  }, 240_000);

  it('survive a restart on the same data directory, and replays after it do not double count', async () => {
    await store.close();
    store = await openStore({ dataDir: tmp.dir, writer: { flushIntervalMs: 10 } });
    expect(flat(await store.cumulativeTotal({ tenantId: tenant }, NOW))).toEqual(all);
    // Replay two batches from the middle of the run and one spanning every day.
    const replay = [...Array.from({ length: 20_000 }, (_, k) => eventAt(tenant, 400_000 + k)), ...Array.from({ length: 16 }, (_, k) => eventAt(tenant, k * 61_111))];
    expect(await store.writer.write(replay)).toMatchObject({ stored: 0, duplicates: replay.length });
    expect(flat(await store.cumulativeTotal({ tenantId: tenant }, NOW))).toEqual(all);
    // The chain continues where it stopped: the head and the last rows verify.
    const tail = await store.verify({ tenantId: tenant, fromSeq: N - 5000 });
    expect(tail).toMatchObject({ ok: true, checked: 5001, toSeq: N });
  });
});
