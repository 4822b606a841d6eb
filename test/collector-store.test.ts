import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTaskCostEmitter, taskEventId, TaskCostInputError } from '../collector/index.ts';
import { openStore, type Store } from '../store/index.ts';
import { buildCollectorApp, freshTenant, rawEvent, type TestApp } from './collector-fixtures.ts';

// Round trips into the real event store (embedded ClickHouse via chdb): the OpenTelemetry SDK's own
// exporters (protobuf and JSON) -> a listening collector on 127.0.0.1 -> store.writer -> listEvents.
let dir: string;
let store: Store;
let t: TestApp;
let url: string;
const RANGE = { from: Date.parse('2026-03-01T00:00:00Z'), to: Date.parse('2026-03-04T00:00:00Z') };

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'forge-collector-store-'));
  store = await openStore({ dataDir: dir, writer: { flushIntervalMs: 10 } });
  t = await buildCollectorApp({ sink: store.writer, now: () => Date.parse('2026-03-02T12:00:00Z') });
  url = await (t.app as FastifyInstance).listen({ host: '127.0.0.1', port: 0 });
});

afterAll(async () => {
  await t?.app.close();
  await store?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function tenant(): string {
  const id = freshTenant();
  t.tenants.add(id);
  return id;
}

const FINALIZED = Date.parse('2026-03-02T09:00:00Z');

describe.each(['protobuf', 'json'] as const)('OTLP/HTTP %s from the OpenTelemetry SDK into the store', (protocol) => {
  it('stores each emitted task once, with Forge-computed amounts', async () => {
    const tn = tenant();
    const forge = createTaskCostEmitter({ url, protocol, scheduledDelayMillis: 50 });
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      ids.push(
        forge.emitTaskCost({
          tenant_id: tn,
          run_id: 'run-otlp',
          task_id: `task-${i}`,
          task_type: 'eval',
          model: 'gpt-4o',
          environment: 'gpu-a10',
          status: i === 2 ? 'failed' : 'success',
          finalized_at: new Date(FINALIZED + i * 1000),
          rli_eval_usd: '0.10',
          task_hours: '0.25',
          gas: { gas_used: '21000', gas_price_gwei: '30', chain_id: 1 },
          llm: [{ model: 'gpt-4o', input_tokens: 1000, output_tokens: 200 }],
        }),
      );
    }
    // The same task emitted again (a runner re-emitting after a crash) has the same id: counted once.
    ids.push(
      forge.emitTaskCost({ tenant_id: tn, run_id: 'run-otlp', task_id: 'task-0', task_type: 'eval', environment: 'gpu-a10', status: 'success', finalized_at: FINALIZED, rli_eval_usd: '0.10', task_hours: '0.25' }),
    );
    expect(ids[3]).toBe(ids[0]);
    expect(ids[0]).toBe(taskEventId(tn, 'run-otlp', 'task-0'));
    await forge.shutdown();

    const rows = await store.listEvents({ tenantId: tn }, RANGE);
    expect(rows.map((r) => r.eventId).sort()).toEqual([...new Set(ids)].sort());
    const first = rows.find((r) => r.taskId === 'task-0')!;
    expect(first).toMatchObject({
      runId: 'run-otlp',
      status: 'success',
      eventTime: FINALIZED,
      gasMicros: 1_575_000,
      computeMicros: 400_000,
      storageMicros: 2_300_000,
      llmMicros: 4_500,
      totalMicros: 4_379_500,
      gasSource: 'reported',
    });
    expect(first.llmTokens).toEqual([{ model: 'gpt-4o', inputTokens: 1000, outputTokens: 200 }]);
    expect(rows.find((r) => r.taskId === 'task-2')!.status).toBe('failed');
  });
});

describe('OTLP/HTTP: bad records', () => {
  const record = (ev: Record<string, unknown>) => ({
    timeUnixNano: String(BigInt(FINALIZED) * 1_000_000n),
    eventName: 'forge.task.finalized',
    body: {
      kvlistValue: {
        values: Object.entries(ev).map(([key, v]) => ({ key, value: typeof v === 'number' ? { intValue: v } : typeof v === 'object' ? toAny(v) : { stringValue: String(v) } })),
      },
    },
  });
  function toAny(v: unknown): unknown {
    if (Array.isArray(v)) return { arrayValue: { values: v.map(toAny) } };
    if (v !== null && typeof v === 'object') return { kvlistValue: { values: Object.entries(v).map(([key, x]) => ({ key, value: toAny(x) })) } };
    return typeof v === 'number' ? (Number.isInteger(v) ? { intValue: v } : { doubleValue: v }) : { stringValue: String(v) };
  }
  const request = (records: unknown[]) => ({ resourceLogs: [{ resource: { attributes: [] }, scopeLogs: [{ scope: { name: 'x' }, logRecords: records }] }] });

  it('JSON: a mixed request is a partial success; only the good record is stored; other logs are ignored', async () => {
    const tn = tenant();
    const good = rawEvent(tn, { finalized_at: undefined });
    const bad = rawEvent(tn, { task_hours: '-1' });
    const other = { timeUnixNano: '1', body: { stringValue: 'just a log line' } };
    const res = await t.app.inject({ method: 'POST', url: '/v1/logs', payload: request([record(good), other, record(bad)]) });
    expect(res.statusCode, res.body).toBe(200);
    const body = res.json();
    expect(body.partialSuccess.rejectedLogRecords).toBe(1);
    expect(body.partialSuccess.errorMessage).toContain('resourceLogs[0].scopeLogs[0].logRecords[2]: task_hours: task_hours must not be negative');
    const rows = await store.listEvents({ tenantId: tn }, RANGE);
    expect(rows.map((r) => r.eventId)).toEqual([good.event_id]);
    expect(rows[0]!.eventTime).toBe(FINALIZED); // finalized_at from the record's timestamp
  });

  it('JSON: nothing acceptable is a 400 naming record and field; nothing stored', async () => {
    const tn = tenant();
    const res = await t.app.inject({ method: 'POST', url: '/v1/logs', payload: request([record(rawEvent(tn, { status: 'meh' }))]) });
    expect(res.statusCode).toBe(400);
    expect(res.json().error).toMatchObject({ code: 'FORGE_ERR_VALIDATION', field: 'resourceLogs[0].scopeLogs[0].logRecords[0].status' });
    expect(await store.listEvents({ tenantId: tn }, RANGE)).toEqual([]);
  });

  it('protobuf: a truncated body is a 400 google.rpc.Status', async () => {
    const res = await t.app.inject({ method: 'POST', url: '/v1/logs', payload: Buffer.from([0x0a, 0x10, 0x12]), headers: { 'content-type': 'application/x-protobuf' } });
    expect(res.statusCode).toBe(400);
    expect(res.headers['content-type']).toBe('application/x-protobuf');
    expect(res.rawPayload[0]).toBe(0x08); // Status.code
    expect(res.rawPayload[1]).toBe(3); // INVALID_ARGUMENT
    expect(res.rawPayload.toString('utf8')).toMatch(/invalid protobuf/);
  });

  it('the producer SDK refuses an invalid task locally, naming the field', () => {
    const forge = createTaskCostEmitter({ url });
    try {
      expect(() =>
        forge.emitTaskCost({ tenant_id: 'x', run_id: 'r', task_id: 't', task_type: 'eval', environment: 'gpu-a10', status: 'success', rli_eval_usd: '-1', task_hours: 1 }),
      ).toThrow(TaskCostInputError);
      let caught: unknown;
      try {
        forge.emitTaskCost({ tenant_id: 'x', run_id: 'r', task_id: 't', task_type: 'eval', environment: 'gpu-a10', status: 'success', rli_eval_usd: '1' });
      } catch (e) {
        caught = e;
      }
      expect(caught).toBeInstanceOf(TaskCostInputError);
      expect((caught as TaskCostInputError).field).toBe('task_hours');
    } finally {
      void forge.shutdown();
    }
  });
});

describe('POST /v1/events into the store', () => {
  it('a batch lands once even when the client retries it, and the 200 comes after the commit', async () => {
    const tn = tenant();
    const events = Array.from({ length: 20 }, (_, i) => rawEvent(tn, { task_id: `t-${i}`, finalized_at: FINALIZED + i }));
    const a = await t.app.inject({ method: 'POST', url: '/v1/events', payload: { events } });
    expect(a.statusCode, a.body).toBe(200);
    // No flush or wait: a 200 means the rows are already committed.
    expect((await store.listEvents({ tenantId: tn }, RANGE)).length).toBe(20);
    const b = await t.app.inject({ method: 'POST', url: '/v1/events', payload: { events } });
    expect(b.statusCode).toBe(200);
    const rows = await store.listEvents({ tenantId: tn }, RANGE);
    expect(rows.length).toBe(20);
    expect(rows.reduce((s, r) => s + r.totalMicros, 0)).toBe(20 * 4_379_500);
  });
});
