import { createClient, type ClickHouseClient } from '@clickhouse/client';
import { createChdbConnection } from 'chdb/connection';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore, type GuardrailEventInput, type Store } from '../store/index.ts';
import { freshTenant, tempDataDir } from './helpers/store-events.ts';

// guardrail_events is hash-chained per tenant stream ('' = the global scope) and every chain's head is
// recorded in chain_heads: changed rows, removed newest rows and replays are seen.
const tmp = tempDataDir('forge-guardrail-chain');
let store: Store;
let raw: ClickHouseClient;
const T0 = Date.parse('2026-03-02T09:00:00Z');

beforeAll(async () => {
  store = await openStore({ dataDir: tmp.dir });
  // Behind the store's back (tampering): a second connection on the same directory.
  raw = createClient({ connection: createChdbConnection({ path: tmp.dir }) as never });
});
afterAll(async () => {
  await raw?.close();
  await store?.close();
  tmp.remove();
});

const sql = (q: string) => raw.command({ query: q, clickhouse_settings: { mutations_sync: '2' } });
const ev = (tenant: string, i: number, extra: Partial<GuardrailEventInput> = {}): GuardrailEventInput => ({
  eventId: `${tenant}-e${i}`,
  at: T0 + i * 1000,
  kind: 'state_change',
  scope: tenant === '' ? 'global' : `tenant:${tenant}`,
  state: i % 2 === 0 ? 'WARNING' : 'NORMAL',
  previous: i % 2 === 0 ? 'NORMAL' : 'WARNING',
  seq: i,
  reason: `change ${i}`,
  details: { i, note: 'ünïcode "quoted"' },
  ...extra,
});
const verify = (tenantId: string) => store.verify({ log: 'guardrail_events', tenantId });

describe('guardrail_events hash chain', () => {
  it('verifies after appends, concurrent ones included, per tenant stream and for the global stream', async () => {
    const t = freshTenant('gc');
    await store.appendGuardrailEvents([ev(t, 1), ev(t, 2)]);
    // Concurrent appends from one process, with run scopes of the tenant in the same stream.
    await Promise.all(Array.from({ length: 8 }, (_, i) => store.appendGuardrailEvents([ev(t, 10 + i, i % 2 ? { scope: `run:${t}/r${i}` } : {}), ev('', 1000 + i + Number(t.length))])));
    const v = await verify(t);
    expect(v).toMatchObject({ ok: true, log: 'guardrail_events', checked: 10, toSeq: 10, pastHead: 0, legacy: 0 });
    const g = await verify('');
    expect(g.ok, JSON.stringify(g)).toBe(true);
    const heads = await store.chainHeads({ log: 'guardrail_events', tenantId: t });
    expect(heads).toEqual([expect.objectContaining({ log: 'guardrail_events', tenantId: t, seq: 10, hash: v.ok ? v.headHash : '' })]);
    // Reads are unchanged by the chain.
    const rows = await store.guardrailEvents({ scope: { tenantId: t }, from: T0, to: T0 + 86_400_000 });
    expect(rows).toHaveLength(10);
    expect(rows[0]!.details).toEqual({ i: 1, note: 'ünïcode "quoted"' });
  });

  it('detects a changed reason', async () => {
    const t = freshTenant('gc');
    await store.appendGuardrailEvents([ev(t, 1), ev(t, 2), ev(t, 3)]);
    expect((await verify(t)).ok).toBe(true);
    await sql(`ALTER TABLE forge.guardrail_events UPDATE reason = 'nothing to see' WHERE tenant_id = '${t}' AND event_id = '${t}-e2'`);
    expect(await verify(t)).toMatchObject({ ok: false, broken: { seq: 2, eventId: `${t}-e2`, reason: 'hash_mismatch' } });
  });

  it('detects the removal of a tenant’s newest row through the recorded head, and keeps the gap visible', async () => {
    const t = freshTenant('gc');
    await store.appendGuardrailEvents([ev(t, 1), ev(t, 2), ev(t, 3)]);
    await sql(`ALTER TABLE forge.guardrail_events DELETE WHERE tenant_id = '${t}' AND event_id = '${t}-e3'`);
    const v = await verify(t);
    expect(v).toMatchObject({ ok: false, broken: { seq: 3, reason: 'head_not_reached' } });
    if (!v.ok) expect(v.broken.message).toMatch(/newest rows were removed/);
    // The next append continues from the recorded head: the removed row stays a gap.
    await store.appendGuardrailEvents([ev(t, 4)]);
    expect(await verify(t)).toMatchObject({ ok: false, broken: { seq: 3, reason: 'seq_gap' } });
  });

  it('a replayed append (same eventId) adds nothing and chains nothing', async () => {
    const t = freshTenant('gc');
    await store.appendGuardrailEvents([ev(t, 1), ev(t, 2)]);
    await store.appendGuardrailEvents([ev(t, 2, { at: T0 + 99_000 }), ev(t, 1)]);
    await Promise.all([store.appendGuardrailEvents([ev(t, 3)]), store.appendGuardrailEvents([ev(t, 3)]), store.appendGuardrailEvents([ev(t, 3), ev(t, 3)])]);
    const [n] = await (await raw.query({ query: `SELECT count() FROM forge.guardrail_events WHERE tenant_id = '${t}'`, format: 'JSONCompactEachRow' })).json<[number]>();
    expect(Number(n)).toBe(3);
    expect(await verify(t)).toMatchObject({ ok: true, checked: 3, toSeq: 3 });
  });

  it('rows written before the chain are a legacy prefix; an unchained row after it is reported', async () => {
    const t = freshTenant('gc');
    await sql(`INSERT INTO forge.guardrail_events (event_id, at, kind, scope, tenant_id, state, seq, reason, details, recorded_at)
      VALUES ('old-1', now64(3), 'state_change', 'tenant:${t}', '${t}', 'WARNING', 1, 'before', '{}', toDateTime64('2025-01-01 00:00:00', 3, 'UTC'))`);
    await store.appendGuardrailEvents([ev(t, 1), ev(t, 2)]);
    expect(await verify(t)).toMatchObject({ ok: true, checked: 2, legacy: 1 });
    await sql(`INSERT INTO forge.guardrail_events (event_id, at, kind, scope, tenant_id, state, seq, reason, details, recorded_at)
      VALUES ('forged', now64(3), 'override', 'tenant:${t}', '${t}', 'NORMAL', 9, 'lifted', '{}', now64(3))`);
    expect(await verify(t)).toMatchObject({ ok: false, broken: { eventId: 'forged', reason: 'unchained_row' } });
  });

  it('a restart (close and reopen on the same directory) continues the chain', async () => {
    const t = freshTenant('gc');
    await store.appendGuardrailEvents([ev(t, 1), ev(t, 2)]);
    await raw.close();
    await store.close();
    store = await openStore({ dataDir: tmp.dir });
    raw = createClient({ connection: createChdbConnection({ path: tmp.dir }) as never });
    await store.appendGuardrailEvents([ev(t, 3), ev(t, 1)]);
    expect(await verify(t)).toMatchObject({ ok: true, checked: 3, toSeq: 3, pastHead: 0 });
  });
});

describe('cost_events heads', () => {
  it('the writer records each stream’s head; removing the newest event is detected through it', async () => {
    const { makeEvent } = await import('./helpers/store-events.ts');
    const t = freshTenant('ch');
    const events = Array.from({ length: 5 }, (_, i) => makeEvent(i, { tenantId: t, eventTime: T0 + i * 1000 }));
    await store.writer.write(events);
    const ok = await store.verify({ tenantId: t });
    expect(ok).toMatchObject({ ok: true, checked: 5, recordedHead: { seq: 5 }, pastHead: 0 });
    expect(await store.chainHeads({ log: 'cost_events', tenantId: t })).toEqual([expect.objectContaining({ seq: 5, hash: ok.ok ? ok.headHash : '' })]);
    await sql(`ALTER TABLE forge.cost_events DELETE WHERE tenant_id = '${t}' AND seq = 5`);
    expect(await store.verify({ tenantId: t })).toMatchObject({ ok: false, broken: { seq: 5, reason: 'head_not_reached' } });
    // A narrowed walk does not reach the end, so it does not judge the head.
    expect(await store.verify({ tenantId: t, toSeq: 4 })).toMatchObject({ ok: true, checked: 4 });
  });
});
