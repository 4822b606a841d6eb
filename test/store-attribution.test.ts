import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ClickHouseUsageSource } from '../billing/index.ts';
import { buildCollectorApp, freshTenant, MemorySink, rawEvent } from './collector-fixtures.ts';
import { chainHash, GENESIS_HASH, HASHED_COLUMNS, hashedCount, openStore, type CostEvent, type Store } from '../store/index.ts';
import { canonicalBytes, eventValues, SEQ_INDEX } from '../store/rows.ts';
import { makeEvent, tempDataDir } from './helpers/store-events.ts';

// Attribution of a cost (user, agent, skill, whose key paid): optional, validated like the other ids, hashed
// from canonical version 3 on; rows written before the columns existed read as not attributed and verify.

const AT = Date.parse('2026-03-02T10:00:00Z');
const RANGE = { from: Date.parse('2026-03-01T00:00:00Z'), to: Date.parse('2026-03-04T00:00:00Z') };
const tmp = tempDataDir('forge-attribution');
let store: Store;

beforeAll(async () => {
  store = await openStore({ dataDir: tmp.dir, writer: { flushIntervalMs: 10 } });
});
afterAll(async () => {
  await store?.close();
  tmp.remove();
});

const ev = (tenantId: string, i: number, over: Partial<CostEvent> = {}): CostEvent => ({ ...makeEvent(i, { tenantId, eventTime: AT + i }), ...over });
/** An event whose LLM amount is `llm` micros (the total follows). */
const withLlm = (e: CostEvent, llm: number): CostEvent => ({ ...e, llmMicros: llm, totalMicros: e.totalMicros - e.llmMicros + llm });

describe('attribution columns on cost events', () => {
  it('round-trips user, agent, skill and key source; old (version 2) rows read empty and the chain verifies; a changed user id is detected', async () => {
    const tn = freshTenant('attr');
    // Two rows the way Forge wrote them before migration 0010: version-2 bytes, no attribution columns.
    let prev = GENESIS_HASH;
    const lines: unknown[][] = [];
    for (const i of [1, 2]) {
      const values = eventValues(ev(tn, i), 'e');
      values[SEQ_INDEX] = i;
      const hash = chainHash(prev, canonicalBytes(values, 2));
      lines.push([...values.slice(0, hashedCount(2)), prev, hash, 2]);
      prev = hash;
    }
    await store.client.insert({
      table: `${store.database}.cost_events`,
      values: lines,
      format: 'JSONCompactEachRow',
      columns: [...HASHED_COLUMNS.slice(0, hashedCount(2)), 'prev_hash', 'hash', 'canonical_version'] as unknown as [string, ...string[]],
      clickhouse_settings: { insert_deduplication_token: randomUUID() },
    });
    const fresh = [
      ev(tn, 3, { userId: 'alice@example.com', agentId: 'agent:7', skillId: 'code', keySource: 'platform' }),
      ev(tn, 4, { userId: 'bob', keySource: 'byok' }),
    ];
    expect(await store.writer.write(fresh)).toMatchObject({ stored: 2 });
    const stored = (await store.listEvents({ tenantId: tn }, RANGE)).sort((a, b) => a.seq - b.seq);
    expect(stored.map((e) => [e.userId, e.agentId, e.skillId, e.keySource])).toEqual([
      [undefined, undefined, undefined, undefined],
      [undefined, undefined, undefined, undefined],
      ['alice@example.com', 'agent:7', 'code', 'platform'],
      ['bob', undefined, undefined, 'byok'],
    ]);
    expect(await store.verify({ tenantId: tn })).toMatchObject({ ok: true, checked: 4 });

    await store.client.command({
      query: `ALTER TABLE ${store.database}.cost_events UPDATE user_id = 'mallory' WHERE tenant_id = {t:String} AND user_id = 'bob'`,
      query_params: { t: tn },
      clickhouse_settings: { mutations_sync: '2' },
    });
    expect(await store.verify({ tenantId: tn })).toMatchObject({ ok: false });
  });

  it('refuses a malformed id or key source, naming the field, and stores nothing', async () => {
    const tn = freshTenant('attr-bad');
    await expect(store.writer.write([ev(tn, 1, { userId: 'has space' })])).rejects.toMatchObject({ field: expect.stringMatching(/\.userId$/) });
    await expect(store.writer.write([ev(tn, 1, { agentId: 'x'.repeat(129) })])).rejects.toMatchObject({ field: expect.stringMatching(/\.agentId$/) });
    await expect(store.writer.write([ev(tn, 1, { keySource: 'shared' as never })])).rejects.toMatchObject({ field: expect.stringMatching(/\.keySource$/) });
    expect(await store.listEvents({ tenantId: tn }, RANGE)).toEqual([]);
  });
});

describe('the collector takes attribution', () => {
  it('passes user_id, agent_id, skill_id and key_source on to the stored event', async () => {
    const tn = freshTenant();
    const sink = new MemorySink();
    const t = await buildCollectorApp({ sink, now: () => Date.parse('2026-03-02T12:00:00Z') });
    t.tenants.add(tn);
    try {
      const res = await t.app.inject({ method: 'POST', url: '/v1/events', payload: rawEvent(tn, { user_id: 'u-1', agent_id: 'a-1', skill_id: 'summarize', key_source: 'byok' }) });
      expect(res.statusCode, res.body).toBe(200);
      const [row] = [...sink.rows.values()];
      expect(row).toMatchObject({ userId: 'u-1', agentId: 'a-1', skillId: 'summarize', keySource: 'byok' });
    } finally {
      await t.app.close();
    }
  });

  it.each([
    ['user_id', 'not ok'],
    ['agent_id', ''],
    ['skill_id', 'x'.repeat(129)],
    ['key_source', 'shared'],
  ])('refuses a bad %s with 400 naming it', async (field, value) => {
    const tn = freshTenant();
    const sink = new MemorySink();
    const t = await buildCollectorApp({ sink, now: () => Date.parse('2026-03-02T12:00:00Z') });
    t.tenants.add(tn);
    try {
      const res = await t.app.inject({ method: 'POST', url: '/v1/events', payload: rawEvent(tn, { [field]: value }) });
      expect(res.statusCode).toBe(400);
      expect(JSON.stringify(res.json())).toContain(field);
      expect(sink.rows.size).toBe(0);
    } finally {
      await t.app.close();
    }
  });
});

describe('per-user metering from the log', () => {
  it('counts a user\'s executions and platform-key spend from the log (BYOK spend excluded), so a restart or a second process agrees', async () => {
    const tn = freshTenant('meter');
    await store.writer.write([
      withLlm(ev(tn, 1, { userId: 'u1', keySource: 'platform' }), 100),
      withLlm(ev(tn, 2, { userId: 'u1', keySource: 'byok' }), 5_000),
      withLlm(ev(tn, 3, { userId: 'u2', keySource: 'platform' }), 7),
    ]);
    const usage = new ClickHouseUsageSource(store.client, { table: `${store.database}.cost_events`, userColumn: 'user_id', keySourceColumn: 'key_source' });
    expect(await usage.executions({ tenantId: tn, userId: 'u1', ...RANGE })).toMatchObject({ count: 2, lastAt: AT + 2 });
    expect(await usage.platformLlmMicros({ tenantId: tn, userId: 'u1', ...RANGE })).toBe(100);
    // Another reader over the same directory (a second process) gives the same answer.
    const again = new ClickHouseUsageSource(store.client, { table: `${store.database}.cost_events`, userColumn: 'user_id', keySourceColumn: 'key_source' });
    expect(await again.platformLlmMicros({ tenantId: tn, userId: 'u2', ...RANGE })).toBe(7);
  });
});
