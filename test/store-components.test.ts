import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildCollectorApp, MemorySink, freshTenant, PRICING_YAML, rawEvent, testPricing } from './collector-fixtures.ts';
import { COMPONENTS, METERED_COMPONENTS } from '../rules/index.ts';
import { CANONICAL_VERSION, chainHash, GENESIS_HASH, HASHED_COLUMNS, hashedCount, openStore, type CostEvent, type Store } from '../store/index.ts';
import { canonicalBytes, eventValues, SEQ_INDEX } from '../store/rows.ts';
import { makeEvent } from './helpers/store-events.ts';

const AT = Date.parse('2026-03-02T10:00:00Z');
const storedEvent = (tenantId: string, i: number): CostEvent => makeEvent(i, { tenantId, eventTime: AT + i });

// The bandwidth component, added through the one list of components: priced per GB from the pricing
// file, stored in its own columns, totalled, exposed as a metric; and the audit chain keeps verifying rows
// written before the component existed (canonical version 1) next to rows written since.

let dir: string;
let store: Store;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'forge-components-'));
  store = await openStore({ dataDir: dir, writer: { flushIntervalMs: 10 } });
});

afterAll(async () => {
  await store?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const BANDWIDTH_PRICING = `${PRICING_YAML}bandwidth:\n  usd_per_gb: "0.09"\n`;

describe('the bandwidth component', () => {
  it('is in the list, metered per GB, and hashed from canonical version 2 on', () => {
    expect(COMPONENTS).toContain('bandwidth');
    expect(METERED_COMPONENTS.map((m) => [m.key, m.metered.field, m.metered.unit])).toEqual([['bandwidth', 'bandwidth_gb', 'GB']]);
    expect(CANONICAL_VERSION).toBe(3);
    expect(HASHED_COLUMNS.slice(hashedCount(1), hashedCount(2))).toEqual(['bandwidth_micros', 'bandwidth_quantity']);
    expect(testPricing(BANDWIDTH_PRICING).metered).toEqual({ bandwidth: '0.09' });
  });

  it('prices bandwidth_gb x usd_per_gb exactly, stores it, totals it and exposes forge_cost_bandwidth_op_usd', async () => {
    const tn = freshTenant();
    const t = await buildCollectorApp({ sink: store.writer, pricing: testPricing(BANDWIDTH_PRICING), now: () => Date.parse('2026-03-02T12:00:00Z') });
    t.tenants.add(tn);
    try {
      const payload = { events: [rawEvent(tn, { bandwidth_gb: '12.5' }), rawEvent(tn, { bandwidth_gb: 0.333333 }), rawEvent(tn)] };
      const res = await t.app.inject({ method: 'POST', url: '/v1/events', payload });
      expect(res.statusCode, res.body).toBe(200);
      const range = { from: Date.parse('2026-03-01T00:00:00Z'), to: Date.parse('2026-03-04T00:00:00Z') };
      const stored = await store.listEvents({ tenantId: tn }, range);
      const bw = stored.map((e) => [e.bandwidthMicros, e.metered?.bandwidth]).sort((a, b) => Number(b[0]) - Number(a[0]));
      // 12.5 GB x 0.09 = 1.125 USD; 0.333333 GB x 0.09 = 0.02999997 USD -> 30 000 micros (half-even).
      expect(bw).toEqual([[1_125_000, '12.5'], [30_000, '0.333333'], [0, undefined]]);
      for (const e of stored) expect(e.totalMicros).toBe(COMPONENTS.reduce((s, k) => s + ((e as unknown as Record<string, number>)[`${k}Micros`] ?? 0), 0));
      const totals = await store.totals({ tenantId: tn }, range);
      expect(totals.components.bandwidth).toBe(1_155_000);
      expect(await store.verify({ tenantId: tn })).toMatchObject({ ok: true, checked: 3 });
      const metrics = (await t.app.inject({ method: 'GET', url: '/metrics' })).body;
      expect(metrics).toContain(`forge_cost_bandwidth_op_usd_sum{tenant="${tn}"} 1.155`);
    } finally {
      await t.app.close();
    }
  });

  it('refuses bandwidth when no price is configured, naming the field', async () => {
    const tn = freshTenant();
    const sink = new MemorySink();
    const t = await buildCollectorApp({ sink });
    t.tenants.add(tn);
    try {
      const res = await t.app.inject({ method: 'POST', url: '/v1/events', payload: rawEvent(tn, { bandwidth_gb: '1' }) });
      expect(res.statusCode).toBe(400);
      expect(JSON.stringify(res.json())).toContain('bandwidth_gb');
      expect(sink.rows.size).toBe(0);
    } finally {
      await t.app.close();
    }
  });
});

describe('the audit chain across canonical versions', () => {
  it('verifies rows hashed before bandwidth existed (version 1) followed by rows hashed since, and still detects a change', async () => {
    const tn = freshTenant('chain');
    // Two rows the way a Forge without the bandwidth columns wrote them: version-1 bytes, no new columns.
    const old: Array<CostEvent & { seq: number }> = [1, 2].map((i) => ({ ...storedEvent(tn, i), seq: i }));
    let prev = GENESIS_HASH;
    const lines: unknown[][] = [];
    for (const e of old) {
      const values = eventValues(e, 'e');
      values[SEQ_INDEX] = e.seq;
      const hash = chainHash(prev, canonicalBytes(values, 1));
      lines.push([...values.slice(0, hashedCount(1)), prev, hash]);
      prev = hash;
    }
    await store.client.insert({
      table: `${store.database}.cost_events`,
      values: lines,
      format: 'JSONCompactEachRow',
      columns: [...HASHED_COLUMNS.slice(0, hashedCount(1)), 'prev_hash', 'hash'] as unknown as [string, ...string[]],
      // Its own token: the embedded connection keeps the settings of earlier statements.
      clickhouse_settings: { insert_deduplication_token: randomUUID() },
    });
    const rs = await store.client.query({ query: `SELECT groupArray(canonical_version) AS v FROM ${store.database}.cost_events WHERE tenant_id = {t:String}`, query_params: { t: tn }, format: 'JSONEachRow' });
    expect((await rs.json<{ v: number[] }>())[0]?.v).toEqual([1, 1]);

    // Then rows written by this Forge (version 2, bandwidth included) continue the same chain.
    const fresh = [3, 4].map((i) => ({ ...storedEvent(tn, i), bandwidthMicros: 90_000, totalMicros: storedEvent(tn, i).totalMicros + 90_000, metered: { bandwidth: '1' } }));
    expect(await store.writer.write(fresh)).toMatchObject({ stored: 2 });
    expect(await store.verify({ tenantId: tn })).toMatchObject({ ok: true, checked: 4 });

    // A version-1 row hashed as version 2 (or the reverse) does not verify: the version is in the bytes.
    const v1 = old[0]!;
    const values = eventValues(v1, 'e');
    values[SEQ_INDEX] = 1;
    expect(chainHash(GENESIS_HASH, canonicalBytes(values, 2))).not.toBe((lines[0] as string[])[hashedCount(1) + 1]);
  });
});
