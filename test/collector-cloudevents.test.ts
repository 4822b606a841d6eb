import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore, type Store } from '../store/index.ts';
import { buildCollectorApp, freshTenant, rawEvent, type TestApp } from './collector-fixtures.ts';

// CloudEvents 1.0 on POST /v1/events (structured and batched JSON) into the real store.

const RANGE = { from: Date.parse('2026-03-01T00:00:00Z'), to: Date.parse('2026-03-04T00:00:00Z') };
let dir: string;
let store: Store;
let t: TestApp;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'forge-cloudevents-'));
  store = await openStore({ dataDir: dir, writer: { flushIntervalMs: 10 } });
  t = await buildCollectorApp({ sink: store.writer, now: () => Date.parse('2026-03-02T12:00:00Z') });
});

afterAll(async () => {
  await t?.app.close();
  await store?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A CloudEvent carrying a task event: the data is the event without its id and tenant. */
function cloudEvent(tenant: string, id: string, source = 'urn:agent-platform:runner-1', over: Record<string, unknown> = {}): Record<string, unknown> {
  const { event_id: _id, tenant_id: _tenant, ...data } = rawEvent(tenant);
  return { specversion: '1.0', id, source, type: 'forge.task.finalized', subject: tenant, datacontenttype: 'application/json', data, ...over };
}

const post = (payload: unknown, type: string) => t.app.inject({ method: 'POST', url: '/v1/events', payload: JSON.stringify(payload), headers: { 'content-type': type } });

describe('CloudEvents in', () => {
  it('a batch sent twice is stored once: id + source is the key, subject the tenant', async () => {
    const tn = freshTenant();
    t.tenants.add(tn);
    // The same id from two sources are two events.
    const batch = [cloudEvent(tn, 'a-1'), cloudEvent(tn, 'a-2'), cloudEvent(tn, 'a-1', 'urn:agent-platform:runner-2')];
    const first = await post(batch, 'application/cloudevents-batch+json');
    expect(first.statusCode, first.body).toBe(200);
    const again = await post(batch, 'application/cloudevents-batch+json');
    expect(again.statusCode, again.body).toBe(200);
    expect((again.json() as { accepted: Array<{ duplicate: boolean }> }).accepted.every((a) => a.duplicate)).toBe(true);
    // The same CloudEvent redelivered alone: a duplicate.
    const one = await post(batch[0], 'application/cloudevents+json; charset=utf-8');
    expect(one.statusCode, one.body).toBe(200);
    expect(one.json()).toMatchObject({ accepted: [{ duplicate: true }] });
    // Another task under a delivered id + source: refused, the CloudEvent's id named; nothing stored.
    const changed = await post(cloudEvent(tn, 'a-1'), 'application/cloudevents+json; charset=utf-8');
    expect(changed.statusCode, changed.body).toBe(409);
    expect(changed.json()).toMatchObject({ error: { code: 'FORGE_ERR_EVENT_ID_CONFLICT', field: 'id' } });
    const shifted = await post([cloudEvent(tn, 'a-3'), { ...batch[1]!, data: { ...(batch[1]!.data as object), finalized_at: '2026-03-02T10:00:00Z' } }], 'application/cloudevents-batch+json');
    expect(shifted.statusCode, shifted.body).toBe(409);
    expect(shifted.json()).toMatchObject({
      error: { code: 'FORGE_ERR_EVENT_ID_CONFLICT', rejected: [{ index: 1, code: 'FORGE_ERR_EVENT_ID_CONFLICT', field: '[1].id' }] },
      accepted: [{ index: 0, duplicate: false }],
    });
    const rows = await store.listEvents({ tenantId: tn }, RANGE);
    expect(rows).toHaveLength(4);
    expect(new Set(rows.map((r) => r.eventId)).size).toBe(4);
    for (const r of rows) expect(r.eventId).toMatch(/^ce:[0-9a-f]{40}$/);
    expect(await store.verify({ tenantId: tn })).toMatchObject({ ok: true, checked: 4 });
  });

  it('refuses a CloudEvent that is not a task event, naming the CloudEvent field; nothing of it is stored', async () => {
    const tn = freshTenant();
    t.tenants.add(tn);
    const cases: Array<[Record<string, unknown>, string]> = [
      [cloudEvent(tn, 'x', undefined, { specversion: '0.3' }), 'specversion'],
      [cloudEvent(tn, 'x', undefined, { type: 'com.example.other' }), 'type'],
      [cloudEvent(tn, 'x', undefined, { subject: undefined }), 'subject'],
      [cloudEvent(tn, 'x', undefined, { data: { ...(cloudEvent(tn, 'x').data as object), rli_eval_usd: '-1' } }), 'data.rli_eval_usd'],
      [cloudEvent(tn, 'x', undefined, { subject: 'nobody-known' }), 'subject'],
    ];
    for (const [ce, field] of cases) {
      const res = await post(ce, 'application/cloudevents+json');
      expect(res.statusCode, res.body).toBe(400);
      expect((res.json() as { error: { field: string } }).error.field).toBe(field);
    }
    const res = await post([cloudEvent(tn, 'ok-1'), cloudEvent(tn, 'bad', undefined, { id: '' })], 'application/cloudevents-batch+json');
    expect(res.statusCode).toBe(400);
    expect((res.json() as { error: { rejected: Array<{ field: string }> } }).error.rejected.map((r) => r.field)).toEqual(['[1].id']);
    expect(await store.listEvents({ tenantId: tn }, RANGE)).toHaveLength(1);
  });
});
