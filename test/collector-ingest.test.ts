import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { usdToMicros } from '../rules/index.ts';
import { buildCollectorApp, freshTenant, MemorySink, rawEvent, type TestApp } from './collector-fixtures.ts';

// The collector's HTTP contract with an in-memory idempotent sink: validation (every bad input gets a
// 400 naming the field and nothing of it is stored), batches, retries, failures of the store and of rule
// evaluation. The round trips into the real store are in collector-store.test.ts.
let t: TestApp;
const sink = new MemorySink();

beforeAll(async () => {
  t = await buildCollectorApp({ sink, bodyLimit: 64 * 1024, maxBatchItems: 50, now: () => Date.parse('2026-03-02T12:00:00Z') });
});
afterAll(async () => {
  await t?.app.close();
});

function tenant(): string {
  const id = freshTenant();
  t.tenants.add(id);
  return id;
}

function post(payload: unknown, headers: Record<string, string> = {}) {
  return t.app.inject({ method: 'POST', url: '/v1/events', payload: payload as string, headers: { 'content-type': 'application/json', ...headers } });
}

function storedFor(tenantId: string): number {
  return [...sink.rows.values()].filter((r) => r.tenantId === tenantId).length;
}

describe('POST /v1/events: accepted events', () => {
  it('computes every component with the cost model and stores the event once', async () => {
    const tn = tenant();
    const ev = rawEvent(tn, { reported_total_usd: '999' }); // a producer's own amount is ignored
    const res = await post(ev);
    expect(res.statusCode, res.body).toBe(200);
    // rli 0.10 + gas 21000 x 30 gwei x 2500 = 1.575 + compute 0.25 h x 1.60 = 0.4
    // + storage 300 GB x 0.23 / 30 = 2.3 (no expected tasks: all of it) + llm 1000 x 2.5e-6 + 200 x 10e-6 = 0.0045
    expect(res.json()).toEqual({ accepted: [{ index: 0, event_id: ev.event_id, total_usd: '4.3795', duplicate: false }] });
    const row = sink.rows.get(ev.event_id as string)!;
    expect(row).toMatchObject({
      tenantId: tn,
      rliMicros: 100_000,
      gasMicros: 1_575_000,
      computeMicros: 400_000,
      storageMicros: 2_300_000,
      llmMicros: 4_500,
      totalMicros: 4_379_500,
      gasSource: 'reported',
      gasUsed: '21000',
      gasPriceGwei: '30',
      nativeUsd: '2500',
      computeHourUsd: '1.60',
      eventTime: Date.parse('2026-03-02T09:00:00Z'),
      ingestTime: Date.parse('2026-03-02T12:00:00Z'),
      llmTokens: [{ model: 'gpt-4o', inputTokens: 1000, outputTokens: 200 }],
    });
    expect(t.accepted.at(-1)!.map((e) => e.eventId)).toEqual([ev.event_id]);
  });

  it('derives task hours from started_at / ended_at and accepts epoch ms', async () => {
    const tn = tenant();
    const ev = rawEvent(tn, { task_hours: undefined, started_at: '2026-03-02T08:00:00Z', ended_at: Date.parse('2026-03-02T09:30:00Z'), finalized_at: Date.parse('2026-03-02T09:30:00Z'), gas: undefined, llm: undefined });
    const res = await post(ev);
    expect(res.statusCode, res.body).toBe(200);
    expect(sink.rows.get(ev.event_id as string)).toMatchObject({ taskHours: '1.5', computeMicros: 2_400_000, gasSource: 'none', gasMicros: 0, nativeUsd: '0' });
  });

  it('counts a retried event once: same id accepted again, stored once, evaluated once', async () => {
    const tn = tenant();
    const ev = rawEvent(tn);
    const before = t.accepted.length;
    const a = await post(ev);
    const b = await post(ev);
    expect(a.statusCode).toBe(200);
    expect(b.statusCode).toBe(200);
    expect(b.json().accepted[0]).toMatchObject({ event_id: ev.event_id, duplicate: true });
    expect(storedFor(tn)).toBe(1);
    expect(t.accepted.length - before).toBe(1);
    const metrics = (await t.app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(metrics).toContain(`forge_tasks_finalized_count{tenant="${tn}"} 1\n`);
  });

  it('accepts a gzip-compressed batch', async () => {
    const tn = tenant();
    const evs = [rawEvent(tn), rawEvent(tn, { status: 'failed' })];
    const res = await post(gzipSync(JSON.stringify({ events: evs })), { 'content-encoding': 'gzip' });
    expect(res.statusCode, res.body).toBe(200);
    expect(storedFor(tn)).toBe(2);
  });

  it('answers 503 with Retry-After when the store write fails, and the retry is accepted', async () => {
    const tn = tenant();
    const ev = rawEvent(tn);
    sink.fail = new Error('disk on fire');
    try {
      const res = await post(ev);
      expect(res.statusCode).toBe(503);
      expect(res.headers['retry-after']).toBe('1');
      expect(res.json().error.code).toBe('FORGE_ERR_STORE_UNAVAILABLE');
      expect(storedFor(tn)).toBe(0);
    } finally {
      sink.fail = undefined;
    }
    const again = await post(ev);
    expect(again.statusCode).toBe(200);
    expect(again.json().accepted[0].duplicate).toBe(false);
    expect(storedFor(tn)).toBe(1);
  });

  it('still answers 200 when rule evaluation fails after the durable write, and reports it', async () => {
    const sink2 = new MemorySink();
    const t2 = await buildCollectorApp({
      sink: sink2,
      onAccepted: () => {
        throw new Error('rules exploded');
      },
    });
    try {
      const tn = freshTenant();
      t2.tenants.add(tn);
      const res = await t2.app.inject({ method: 'POST', url: '/v1/events', payload: rawEvent(tn, { finalized_at: Date.now() }) });
      expect(res.statusCode, res.body).toBe(200);
      expect(sink2.rows.size).toBe(1);
      expect(t2.errors.map((e) => (e as Error).message)).toEqual(['rules exploded']);
    } finally {
      await t2.app.close();
    }
  });
});

// Each case: a mutation of a valid event, and the field the 400 must name.
const MALFORMED: Array<[string, Record<string, unknown>, string, RegExp?]> = [
  ['missing event_id', { event_id: undefined }, 'event_id', /required/],
  ['missing tenant_id', { tenant_id: undefined }, 'tenant_id', /required/],
  ['missing finalized_at', { finalized_at: undefined }, 'finalized_at', /required/],
  ['missing rli_eval_usd', { rli_eval_usd: undefined }, 'rli_eval_usd', /required/],
  ['missing task hours', { task_hours: undefined }, 'task_hours', /required/],
  ['negative rli_eval_usd', { rli_eval_usd: -1 }, 'rli_eval_usd', /negative/],
  ['NaN rli_eval_usd', { rli_eval_usd: 'NaN' }, 'rli_eval_usd', /decimal/],
  ['enormous rli_eval_usd', { rli_eval_usd: '1000000000000' }, 'rli_eval_usd', /implausibly large/],
  ['rli_eval_usd of the wrong type', { rli_eval_usd: true }, 'rli_eval_usd', /number or a decimal string/],
  ['task_hours as an object', { task_hours: { h: 1 } }, 'task_hours'],
  ['negative gas_used', { gas: { gas_used: -21000, gas_price_gwei: '30' } }, 'gas.gas_used', /negative/],
  ['fractional gas_used', { gas: { gas_used: 1.5, gas_price_gwei: '30' } }, 'gas.gas_used', /whole/],
  ['enormous gas price', { gas: { gas_used: 21000, gas_price_gwei: '1' + '0'.repeat(30) } }, 'gas.gas_price_gwei', /implausibly large/],
  ['malformed tx hash', { gas: { tx_hash: '0x12', chain_id: 1 } }, 'gas.tx_hash', /32-byte/],
  ['tx hash without chain', { gas: { tx_hash: `0x${'1'.repeat(64)}` } }, 'gas.chain_id', /required/],
  ['tx hash and reported gas together', { gas: { tx_hash: `0x${'1'.repeat(64)}`, chain_id: 1, gas_used: 1, gas_price_gwei: 1 } }, 'gas.gas_used', /not both/],
  ['unknown status', { status: 'done' }, 'status', /success, failed, retried/],
  ['finalized_at not a date', { finalized_at: 'yesterday' }, 'finalized_at', /ISO 8601/],
  ['finalized_at without a time zone', { finalized_at: '2026-03-02T09:00:00' }, 'finalized_at', /time zone/],
  ['finalized_at in the future', { finalized_at: '2026-03-05T09:00:00Z' }, 'finalized_at', /future/],
  ['unknown field', { cost_usd: 12 }, 'cost_usd', /unknown field/],
  ['negative tokens', { llm: [{ model: 'gpt-4o', input_tokens: -5, output_tokens: 0 }] }, 'llm[0].input_tokens', /negative/],
  ['enormous tokens', { llm: [{ model: 'gpt-4o', input_tokens: 1e13, output_tokens: 0 }] }, 'llm[0].input_tokens', /large/],
  ['LLM model without a price', { llm: [{ model: 'gpt-4o', input_tokens: 1, output_tokens: 1 }, { model: 'gpt-9', input_tokens: 1, output_tokens: 1 }] }, 'llm[1].model', /no price/],
  ['environment without a compute price', { environment: 'tpu-v9' }, 'environment', /no compute price/],
  ['task_hours and started_at together', { started_at: '2026-03-02T08:00:00Z', ended_at: '2026-03-02T09:00:00Z' }, 'started_at', /not both/],
  ['ended_at before started_at', { task_hours: undefined, started_at: '2026-03-02T09:00:00Z', ended_at: '2026-03-02T08:00:00Z' }, 'ended_at', /before/],
  ['event_id with spaces', { event_id: 'an id' }, 'event_id'],
  ['enormous operation total', { task_hours: '8000' }, 'task_hours', /above the limit/],
  ['tenant_id of the wrong type', { tenant_id: 42 }, 'tenant_id', /string/],
];

describe('POST /v1/events: bad input gets a 400 naming the field, and nothing is stored', () => {
  it.each(MALFORMED)('%s', async (_name, mutation, field, reason) => {
    const tn = tenant();
    const res = await post(rawEvent(tn, mutation));
    expect(res.statusCode, res.body).toBe(400);
    const err = res.json().error;
    expect(err.code).toBe('FORGE_ERR_VALIDATION');
    expect(err.field).toBe(field);
    expect(err.message.startsWith(`${field}: `)).toBe(true);
    if (reason) expect(err.message).toMatch(reason);
    expect(storedFor(tn)).toBe(0);
  });

  it('unknown tenant', async () => {
    const tn = freshTenant(); // not registered
    const res = await post(rawEvent(tn));
    expect(res.statusCode).toBe(400);
    expect(res.json().error).toMatchObject({ code: 'FORGE_ERR_VALIDATION', field: 'tenant_id' });
    expect(res.json().error.message).toMatch(/unknown tenant/);
    expect(storedFor(tn)).toBe(0);
  });

  it('a tenant the caller may not write: 403', async () => {
    const tn = tenant();
    const res = await post(rawEvent(tn), { 'x-test-tenants': 'someone-else' });
    expect(res.statusCode).toBe(403);
    expect(res.json().error).toMatchObject({ code: 'FORGE_ERR_FORBIDDEN_TENANT', field: 'tenant_id' });
    expect(storedFor(tn)).toBe(0);
  });

  it('a batch mixing good and bad: per-item rejections, the good ones stored, nothing of the bad', async () => {
    const tn = tenant();
    const other = tenant();
    const good1 = rawEvent(tn);
    const good2 = rawEvent(tn);
    const batch = [good1, rawEvent(tn, { rli_eval_usd: -3 }), good2, rawEvent(tn, { gas: { gas_used: 'lots', gas_price_gwei: 1 } }), rawEvent(other), { ...good1 }];
    const res = await post({ events: batch }, { 'x-test-tenants': tn });
    expect(res.statusCode, res.body).toBe(400);
    const body = res.json();
    expect(body.error.code).toBe('FORGE_ERR_VALIDATION');
    expect(body.error.rejected.map((r: { index: number; field: string; code: string }) => [r.index, r.field, r.code])).toEqual([
      [1, 'events[1].rli_eval_usd', 'FORGE_ERR_VALIDATION'],
      [3, 'events[3].gas.gas_used', 'FORGE_ERR_VALIDATION'],
      [4, 'events[4].tenant_id', 'FORGE_ERR_FORBIDDEN_TENANT'],
      [5, 'events[5].event_id', 'FORGE_ERR_VALIDATION'],
    ]);
    expect(body.accepted.map((a: { index: number }) => a.index)).toEqual([0, 2]);
    expect(storedFor(tn)).toBe(2);
    expect(storedFor(other)).toBe(0);
    expect(sink.rows.has(good1.event_id as string) && sink.rows.has(good2.event_id as string)).toBe(true);
  });

  it('an empty batch, a batch too large, a non-list batch', async () => {
    expect((await post({ events: [] })).json().error).toMatchObject({ code: 'FORGE_ERR_VALIDATION', field: 'events' });
    const tn = tenant();
    const big = await post({ events: Array.from({ length: 51 }, () => rawEvent(tn)) });
    expect(big.statusCode).toBe(400);
    expect(big.json().error.message).toMatch(/at most 50/);
    expect((await post({ events: 'x' })).statusCode).toBe(400);
    expect(storedFor(tn)).toBe(0);
  });

  it('a body that is not an object, or not JSON', async () => {
    const a = await post([rawEvent(tenant())]);
    expect(a.statusCode).toBe(400);
    expect(a.json().error).toMatchObject({ code: 'FORGE_ERR_VALIDATION', field: 'body' });
    const b = await post('{"event_id": ');
    expect(b.statusCode).toBe(400);
    expect(b.json().error).toMatchObject({ code: 'FORGE_ERR_VALIDATION', field: 'body' });
    const c = await post('not gzip', { 'content-encoding': 'gzip' });
    expect(c.statusCode).toBe(400);
    expect(c.json().error.field).toBe('body');
  });

  it('an oversized body: 413', async () => {
    const tn = tenant();
    const events = Array.from({ length: 40 }, () => rawEvent(tn, { task_type: 'x'.repeat(60), model: 'y'.repeat(128), padding_note: undefined }));
    const payload = JSON.stringify({ events, pad: 'z'.repeat(70 * 1024) });
    const res = await post(payload);
    expect(res.statusCode).toBe(413);
    expect(res.json().error).toMatchObject({ code: 'FORGE_ERR_PAYLOAD_TOO_LARGE', field: 'body' });
    // A gzip bomb is measured after decompression.
    const bomb = await post(gzipSync(JSON.stringify({ events: [rawEvent(tn, { model: 'x'.repeat(100) })], pad: ' '.repeat(1 << 20) })), { 'content-encoding': 'gzip' });
    expect(bomb.statusCode).toBe(413);
    expect(storedFor(tn)).toBe(0);
  });

  it('a wrong content type: 415', async () => {
    const tn = tenant();
    const text = await post(JSON.stringify(rawEvent(tn)), { 'content-type': 'text/plain' });
    expect(text.statusCode).toBe(415);
    expect(text.json().error).toMatchObject({ code: 'FORGE_ERR_UNSUPPORTED_MEDIA_TYPE', field: 'content-type' });
    const proto = await post(Buffer.from([1, 2, 3]), { 'content-type': 'application/x-protobuf' });
    expect(proto.statusCode).toBe(415);
    const br = await post(JSON.stringify(rawEvent(tn)), { 'content-encoding': 'br' });
    expect(br.statusCode).toBe(415);
    expect(br.json().error.field).toBe('content-encoding');
    expect(storedFor(tn)).toBe(0);
  });

  it('counts rejections by code in the health metrics', async () => {
    const body = (await t.app.inject({ method: 'GET', url: '/metrics' })).body;
    const line = body.split('\n').find((l) => l.startsWith('forge_collector_rejected_count{component="collector",code="FORGE_ERR_VALIDATION"}'));
    expect(Number(line?.split(' ')[1])).toBeGreaterThanOrEqual(MALFORMED.length);
    expect(usdToMicros('4.3795')).toBe(4_379_500);
  });
});
