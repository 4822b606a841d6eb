import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SpanStatusCode } from '@opentelemetry/api';
import { OTLPTraceExporter as OTLPTraceExporterHttp } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as OTLPTraceExporterProto } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore, type Store } from '../store/index.ts';
import { buildCollectorApp, freshTenant, PRICING_YAML, testPricing, type TestApp } from './collector-fixtures.ts';

// An unmodified OpenTelemetry SDK (sdk-trace-base + the OTLP/HTTP trace exporters, JSON and protobuf)
// exports GenAI spans to a listening collector on 127.0.0.1, which prices them into the real store.

const NOW = Date.parse('2026-03-02T12:00:00Z');
const RANGE = { from: Date.parse('2026-03-01T00:00:00Z'), to: Date.parse('2026-03-04T00:00:00Z') };
// gpt-4o: input 2.50, output 10.00, cache read 1.25, cache write 3.125 USD per Mtok; reasoning at the output price.
const PRICING = PRICING_YAML.replace(
  'gpt-4o: { input_per_mtok_usd: "2.50", output_per_mtok_usd: "10.00" }',
  'gpt-4o: { input_per_mtok_usd: "2.50", output_per_mtok_usd: "10.00", cache_read_per_mtok_usd: "1.25", cache_creation_per_mtok_usd: "3.125" }',
);

let dir: string;
let store: Store;
let t: TestApp;
let url: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'forge-collector-traces-'));
  store = await openStore({ dataDir: dir, writer: { flushIntervalMs: 10 } });
  t = await buildCollectorApp({ sink: store.writer, pricing: testPricing(PRICING), now: () => NOW });
  url = await (t.app as FastifyInstance).listen({ host: '127.0.0.1', port: 0 });
});

afterAll(async () => {
  await t?.app.close();
  await store?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function exportAgain(exporter: SpanExporter, spans: ReturnType<InMemorySpanExporter['getFinishedSpans']>): Promise<{ code: number }> {
  return new Promise((resolve) => exporter.export(spans, resolve));
}

describe.each(['protobuf', 'json'] as const)('GenAI spans over OTLP/HTTP %s from the OpenTelemetry SDK', (protocol) => {
  it('become priced cost events of the named tenant, run and task, each span once, token classes never counted twice', async () => {
    const tn = freshTenant();
    t.tenants.add(tn);
    const exporter = protocol === 'json' ? new OTLPTraceExporterHttp({ url: `${url}/v1/traces` }) : new OTLPTraceExporterProto({ url: `${url}/v1/traces` });
    const memory = new InMemorySpanExporter();
    const provider = new BasicTracerProvider({
      resource: resourceFromAttributes({ 'service.name': 'agent', 'forge.tenant.id': tn, 'forge.run.id': 'run-genai' }),
      spanProcessors: [new SimpleSpanProcessor(exporter), new SimpleSpanProcessor(memory)],
    });
    const tracer = provider.getTracer('genai-test');
    const end = Date.parse('2026-03-02T09:00:00.123Z');
    // A chat call with every token class.
    const chat = tracer.startSpan('chat gpt-4o', {
      startTime: new Date(end - 2000),
      attributes: {
        'gen_ai.operation.name': 'chat',
        'gen_ai.provider.name': 'openai',
        'gen_ai.request.model': 'gpt-4o',
        'gen_ai.response.model': 'gpt-4o',
        'gen_ai.usage.input_tokens': 1000,
        'gen_ai.usage.output_tokens': 500,
        'gen_ai.usage.cache_read.input_tokens': 400,
        'gen_ai.usage.cache_creation.input_tokens': 100,
        'gen_ai.usage.reasoning.output_tokens': 200,
        'gen_ai.agent.id': 'agent-7',
        'gen_ai.conversation.id': 'conv-1',
        'forge.task.id': 'task-42',
      },
    });
    chat.end(new Date(end));
    // A failed call without classes, its task from the trace (no forge.task.id), its run from the resource.
    const failed = tracer.startSpan('chat gpt-4o', { startTime: new Date(end - 500), attributes: { 'gen_ai.request.model': 'gpt-4o', 'gen_ai.usage.input_tokens': 2000, 'gen_ai.usage.output_tokens': 0 } });
    failed.setStatus({ code: SpanStatusCode.ERROR });
    failed.end(new Date(end + 1000));
    // A span that is not an LLM call (no usage): ignored.
    tracer.startSpan('tool call', { startTime: new Date(end - 100) }).end(new Date(end));
    await provider.forceFlush();

    const spans = memory.getFinishedSpans();
    expect(spans).toHaveLength(3);
    // The exporter retries (or a collector restarts): the same spans again are stored once.
    expect((await exportAgain(exporter, spans)).code).toBe(0); // ExportResultCode.SUCCESS
    await provider.shutdown();

    const rows = await store.listEvents({ tenantId: tn }, RANGE);
    expect(rows).toHaveLength(2);
    const byTask = new Map(rows.map((r) => [r.taskId, r]));
    const c = byTask.get('task-42')!;
    const cs = chat.spanContext();
    expect(c).toMatchObject({
      eventId: `otel:${cs.traceId}:${cs.spanId}`,
      runId: 'run-genai',
      taskType: 'chat',
      model: 'gpt-4o',
      environment: 'gen_ai',
      status: 'success',
      eventTime: end,
      rliMicros: 0,
      gasMicros: 0,
      computeMicros: 0,
      // uncached input 500 x 2.50 + cache read 400 x 1.25 + cache write 100 x 3.125 + output 300 x 10 +
      // reasoning 200 x 10 = 7062.5 USD per Mtok = 0.0070625 USD -> 7062 micros (half-even).
      llmMicros: 7062,
    });
    expect(c.llmTokens).toEqual([{ model: 'gpt-4o', inputTokens: 1000, outputTokens: 500 }]);
    expect(c.totalMicros).toBe(7062 + c.storageMicros);
    const fs = failed.spanContext();
    const f = byTask.get(fs.traceId)!;
    expect(f).toMatchObject({ eventId: `otel:${fs.traceId}:${fs.spanId}`, runId: 'run-genai', status: 'failed', taskType: 'gen_ai', eventTime: end + 1000, llmMicros: 5000 });
    expect(await store.verify({ tenantId: tn })).toMatchObject({ ok: true, checked: 2 });
  });
});

describe('GenAI spans that cannot be priced', () => {
  it('a span without a tenant or with cache tokens above its input tokens is rejected naming the field; nothing stored', async () => {
    const tn = freshTenant();
    t.tenants.add(tn);
    const span = (attrs: Array<[string, unknown]>, spanId: string) => ({
      traceId: '0af7651916cd43dd8448eb211c80319c',
      spanId,
      name: 'chat',
      endTimeUnixNano: String(Date.parse('2026-03-02T09:00:00Z') * 1e6),
      attributes: attrs.map(([key, v]) => ({ key, value: typeof v === 'number' ? { intValue: v } : { stringValue: String(v) } })),
    });
    const body = {
      resourceSpans: [
        {
          resource: { attributes: [] },
          scopeSpans: [
            {
              spans: [
                span([['gen_ai.request.model', 'gpt-4o'], ['gen_ai.usage.input_tokens', 10], ['gen_ai.usage.output_tokens', 1]], 'b7ad6b7169203331'),
                span([['forge.tenant.id', tn], ['gen_ai.request.model', 'gpt-4o'], ['gen_ai.usage.input_tokens', 10], ['gen_ai.usage.output_tokens', 1], ['gen_ai.usage.cache_read.input_tokens', 11]], 'b7ad6b7169203332'),
              ],
            },
          ],
        },
      ],
    };
    const res = await t.app.inject({ method: 'POST', url: '/v1/traces', payload: body });
    expect(res.statusCode, res.body).toBe(400);
    const fields = (res.json() as { error: { rejected: Array<{ field: string }> } }).error.rejected.map((r) => r.field);
    expect(fields[0]).toBe('tenant_id');
    expect(fields[1]).toMatch(/cache/);
    expect(await store.listEvents({ tenantId: tn }, RANGE)).toEqual([]);
  });
});

describe('GenAI spans resent', () => {
  it('the same span again is a duplicate; with its end time re-stamped it is refused (409, the event id named); the rest of the export stands', async () => {
    const tn = freshTenant();
    t.tenants.add(tn);
    const end = Date.parse('2026-03-02T09:00:00Z');
    const span = (spanId: string, endMs: number) => ({
      traceId: '5b8efff798038103d269b633813fc60c',
      spanId,
      name: 'chat gpt-4o',
      startTimeUnixNano: String((endMs - 1000) * 1e6),
      endTimeUnixNano: String(endMs * 1e6),
      attributes: [
        { key: 'forge.tenant.id', value: { stringValue: tn } },
        { key: 'gen_ai.request.model', value: { stringValue: 'gpt-4o' } },
        { key: 'gen_ai.usage.input_tokens', value: { intValue: 100 } },
        { key: 'gen_ai.usage.output_tokens', value: { intValue: 10 } },
      ],
    });
    const send = (spans: unknown[]) => t.app.inject({ method: 'POST', url: '/v1/traces', payload: { resourceSpans: [{ resource: { attributes: [] }, scopeSpans: [{ spans }] }] } });
    const first = await send([span('eee19b7ec3c1b174', end)]);
    expect(first.statusCode, first.body).toBe(200);
    const again = await send([span('eee19b7ec3c1b174', end)]);
    expect(again.statusCode, again.body).toBe(200);
    expect(again.json()).toMatchObject({ accepted: [{ duplicate: true }] });
    const moved = await send([span('eee19b7ec3c1b174', end + 60_000)]);
    expect(moved.statusCode, moved.body).toBe(409);
    expect(moved.json()).toMatchObject({ error: { code: 'FORGE_ERR_EVENT_ID_CONFLICT', field: 'resourceSpans[0].scopeSpans[0].spans[0].event_id' } });
    // With a new span beside it: partial success, the re-stamped one counted as rejected.
    const mixed = await send([span('eee19b7ec3c1b175', end), span('eee19b7ec3c1b174', end - 60_000)]);
    expect(mixed.statusCode, mixed.body).toBe(200);
    expect(mixed.json()).toMatchObject({ partialSuccess: { rejectedSpans: 1 }, accepted: [{ index: 0, duplicate: false }] });
    expect(mixed.json().partialSuccess.errorMessage).toMatch(/event_id: event_id "otel:5b8efff798038103d269b633813fc60c:eee19b7ec3c1b174" was already accepted/);
    const rows = await store.listEvents({ tenantId: tn }, RANGE);
    expect(rows.map((r) => [r.eventId.slice(-4), r.eventTime])).toEqual([
      ['b174', end],
      ['b175', end],
    ]);
    expect(await store.verify({ tenantId: tn })).toMatchObject({ ok: true, checked: 2 });
  });
});
