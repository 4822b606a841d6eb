import { readFileSync } from 'node:fs';
import { JsonLogsSerializer, ProtobufLogsSerializer } from '@opentelemetry/otlp-transformer';
import { InMemoryLogRecordExporter, LoggerProvider, SimpleLogRecordProcessor } from '@opentelemetry/sdk-logs';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { describe, expect, it } from 'vitest';
import {
  ForgeMetrics,
  OVERFLOW_LABEL,
  decodeLogsJson,
  decodeLogsProtobuf,
  fixedNativePrice,
  loadPricing,
  parsePricing,
  parseTaskEvent,
  priceTaskEvent,
  recordToEvent,
  PricingConfigError,
} from '../collector/index.ts';
import { usdToMicros, zeroComponents } from '../rules/index.ts';
import { testPricing } from './collector-fixtures.ts';

// Pure parts of the collector: OTLP decoding against the SDK's own serializers, the pricing file, the
// cost computation against the worked examples, metric names as Prometheus sees them.

function sdkRecords() {
  const exporter = new InMemoryLogRecordExporter();
  const provider = new LoggerProvider({ resource: resourceFromAttributes({ 'service.name': 'unit' }), processors: [new SimpleLogRecordProcessor({ exporter })] });
  const logger = provider.getLogger('u');
  logger.emit({
    eventName: 'forge.task.finalized',
    timestamp: 1_772_442_000_123,
    body: {
      event_id: 'e-1',
      rli_eval_usd: '0.10',
      hours: 0.25,
      neg: -7,
      big: 2 ** 53 + 2,
      ok: true,
      nested: { list: [1, 'two', { three: 3 }], empty: [] },
      bytes: new Uint8Array([1, 2, 255]),
      ['__proto__']: 'kept as a key',
    },
    attributes: { 'event.name': 'ignored-when-body-is-a-map', n: 1.5 },
  });
  logger.emit({ body: 'a plain log line', attributes: { level: 'info' } });
  logger.emit({ attributes: { 'event.name': 'forge.task.finalized', event_id: 'e-2', task_hours: 2 } });
  return exporter.getFinishedLogRecords();
}

describe('OTLP logs decoding', () => {
  it('decodes the SDK protobuf and JSON encodings of the same records identically', () => {
    const recs = sdkRecords();
    const proto = decodeLogsProtobuf(ProtobufLogsSerializer.serializeRequest(recs)!);
    const json = decodeLogsJson(JSON.parse(Buffer.from(JsonLogsSerializer.serializeRequest(recs)!).toString('utf8')));
    expect(proto.length).toBe(3);
    expect(proto).toEqual(json);
    const [a, b, c] = proto;
    expect(a!.eventName).toBe('forge.task.finalized');
    expect(a!.timeUnixNano).toBe('1772442000123000000');
    expect(a!.path).toBe('resourceLogs[0].scopeLogs[0].logRecords[0]');
    expect(a!.body).toEqual({
      event_id: 'e-1',
      rli_eval_usd: '0.10',
      hours: 0.25,
      neg: -7,
      big: String(2 ** 53 + 2),
      ok: true,
      nested: { list: [1, 'two', { three: 3 }], empty: [] },
      bytes: Buffer.from([1, 2, 255]).toString('base64'),
      ['__proto__']: 'kept as a key',
    });
    expect(Object.getPrototypeOf(a!.body)).toBe(Object.prototype);
    expect(recordToEvent(a!)).toMatchObject({ event_id: 'e-1', finalized_at: 1_772_442_000_123 });
    expect(recordToEvent(b!)).toBeUndefined();
    expect(recordToEvent(c!)).toEqual({ event_id: 'e-2', task_hours: 2, finalized_at: c!.timeUnixNano === '0' ? undefined : Number(BigInt(c!.timeUnixNano) / 1_000_000n) });
  });

  it('refuses a truncated or mistyped protobuf body, naming where', () => {
    const good = ProtobufLogsSerializer.serializeRequest(sdkRecords())!;
    expect(() => decodeLogsProtobuf(good.subarray(0, good.length - 3))).toThrow(/invalid protobuf/);
    // resource_logs with wire type varint instead of length-delimited
    expect(() => decodeLogsProtobuf(Uint8Array.from([0x08, 0x01]))).toThrow(/wire type/);
    expect(() => decodeLogsJson({ resourceLogs: [{ scopeLogs: [{ logRecords: [{ timeUnixNano: -1 }] }] }] })).toThrow(/timeUnixNano/);
  });
});

describe('pricing file', () => {
  it('the shipped config/pricing.yaml parses', () => {
    const p = loadPricing('config/pricing.yaml', {});
    expect(p.compute.environments['gpu-a10']).toBe('1.60');
    expect(p.nativePrice).toEqual({ source: 'fixed', usd: '2500' });
    expect(p.chain?.rpcUrl).toBe('http://127.0.0.1:8545');
    expect(readFileSync('config/pricing.yaml', 'utf8')).toContain('FORGE_RPC_URL');
  });

  it('FORGE_RPC_URL overrides the file; a bad one fails naming it', () => {
    expect(loadPricing('config/pricing.yaml', { FORGE_RPC_URL: 'https://rpc.example/v1' }).chain?.rpcUrl).toBe('https://rpc.example/v1');
    expect(() => loadPricing('config/pricing.yaml', { FORGE_RPC_URL: 'ftp://x' })).toThrow(/FORGE_RPC_URL/);
  });

  it('fails fast naming key and line', () => {
    const bad = `compute:\n  environments: { a: "1" }\nstorage:\n  gb_stored: "-3"\n  gb_month_usd: "1"\n  expected_tasks_day: 1\nnative_price: { source: fixed, usd: "1" }\n`;
    expect(() => parsePricing(bad, 'p.yaml')).toThrow(PricingConfigError);
    expect(() => parsePricing(bad, 'p.yaml')).toThrow(/^p\.yaml:4: storage\.gb_stored: must be a non-negative decimal/);
    expect(() => parsePricing(bad.replace('"-3"', '"3"').replace('expected_tasks_day: 1', 'expected_tasks_day: 1\n  typo: 2'), 'p.yaml')).toThrow(/p\.yaml:7: storage\.typo: unknown key/);
    expect(() => parsePricing(bad.replace('"-3"', '"3"').replace('source: fixed, usd: "1"', 'source: chainlink, feed_address: "0x0000000000000000000000000000000000000001"'), 'p.yaml')).toThrow(/chain\.rpc_url or FORGE_RPC_URL/);
  });
});

describe('cost computation (the worked examples of shared/cost-model-vectors.json)', () => {
  const vectors = JSON.parse(readFileSync('test/fixtures/cost-model-vectors.json', 'utf8')) as {
    operations: Array<{ name: string; input: Record<string, string | number>; expect: Record<string, string> }>;
  };
  it.each(vectors.operations.map((o) => [o.name, o] as const))('%s', async (_n, op) => {
    const i = op.input;
    const pricing = testPricing(
      `compute: { environments: { env: "${i.C_compute_hour}" } }
storage: { gb_stored: "${i.GB_stored}", gb_month_usd: "${i.C_storage_gb_month}", expected_tasks_day: ${i.expected_tasks_day} }
native_price: { source: fixed, usd: "${i.P_native_usd}" }
`,
    );
    const p = parseTaskEvent(
      {
        event_id: 'v',
        tenant_id: 't',
        run_id: 'r',
        task_id: 'k',
        task_type: 'x',
        environment: 'env',
        status: 'success',
        finalized_at: '2026-03-02T09:00:00Z',
        rli_eval_usd: String(i.C_rli_eval),
        task_hours: String(i.H_task),
        gas: { gas_used: i.G_used, gas_price_gwei: String(i.P_gas_gwei) },
      },
      { now: Date.parse('2026-03-02T10:00:00Z') },
    );
    if (!p.ok) throw new Error(`${p.field}: ${p.reason}`);
    const r = await priceTaskEvent(p.event, { pricing, nativePrice: fixedNativePrice(String(i.P_native_usd)), now: 0 });
    if (!r.ok) throw new Error(`${r.field}: ${r.reason}`);
    for (const k of ['rli', 'gas', 'compute', 'storage', 'total'] as const) {
      expect(r.event[`${k}Micros`], k).toBe(usdToMicros(op.expect[k]!));
    }
  });
});

describe('ForgeMetrics', () => {
  it('exposes the canonical names unchanged, counters without a _total suffix', async () => {
    const m = new ForgeMetrics();
    try {
      m.recordEvent({
        eventId: 'e', tenantId: 'acme', runId: 'r', taskId: 't', taskType: 'x', model: '', environment: 'e', status: 'failed', eventTime: 0, ingestTime: 0,
        rliMicros: 100_000, gasMicros: 0, computeMicros: 0, storageMicros: 0, llmMicros: 0, totalMicros: 100_000,
        gasUsed: '0', gasPriceGwei: '0', nativeUsd: '0', gasSource: 'none', chainId: 0, txHash: '', taskHours: '0', computeHourUsd: '0', gbStored: '0', storageGbMonthUsd: '0', llmTokens: [],
      });
      m.recordFlush(0.004, 1, true);
      m.recordRejected('FORGE_ERR_VALIDATION');
      m.setScopeTotals('tenant:acme', { dayMicros: 12_500_000, weekMicros: 40_000_000, runMicros: 1, components: { ...zeroComponents(), rli: 1, gas: 2, compute: 3, storage: 4, llm: 5 } });
      m.setBudgets('tenant:acme', { daySoft: 80_000_000, dayHard: 100_000_000, weekSoft: 1, weekHard: 2, runCap: 3, unitCap: 4 });
      m.recordStateChange({ scope: 'tenant:acme', state: 'HARD_STOP', previous: 'WARNING', seq: 2, at: 0, reason: '', holds: [], weekMicros: 0 });
      m.recordStateChange({ scope: 'tenant:acme', state: 'WARNING', previous: 'HARD_STOP', seq: 3, at: 0, reason: 'lift', holds: [], weekMicros: 0 });
      const text = await m.render();
      const names = new Set(text.split('\n').filter((l) => l.startsWith('# TYPE ')).map((l) => l.split(' ')[2]));
      for (const c of ['rli', 'gas', 'compute', 'storage', 'llm', 'total']) expect(names).toContain(`forge_cost_${c}_op_usd`);
      for (const c of ['rli', 'gas', 'compute', 'storage', 'llm', 'total']) expect(names).toContain(`forge_cost_${c}_day_usd`);
      for (const n of ['forge_cost_total_week_usd', 'forge_cost_total_run_usd', 'forge_tasks_finalized_count', 'forge_tasks_failed_count', 'forge_tasks_retried_count', 'forge_guardrail_state', 'forge_stop_condition_warning_count', 'forge_stop_condition_hard_stop_count', 'forge_stop_condition_emergency_stop_count', 'forge_collector_buffer_depth', 'forge_collector_flush_seconds', 'forge_collector_rejected_count']) {
        expect(names).toContain(n);
      }
      for (const b of ['day_soft', 'day_hard', 'week_soft', 'week_hard', 'run_cap', 'unit_cap']) expect(names).toContain(`forge_budget_${b}_usd`);
      expect([...names].filter((n) => n?.endsWith('_total'))).toEqual([]);
      expect(text).toContain('forge_cost_total_day_usd{scope="tenant:acme",tenant="acme"} 12.5\n');
      expect(text).toContain('forge_budget_day_hard_usd{scope="tenant:acme",tenant="acme"} 100\n');
      expect(text).toContain('forge_tasks_failed_count{tenant="acme"} 1\n');
      expect(text).toContain('forge_cost_rli_op_usd_sum{tenant="acme"} 0.1\n');
      // The lift back to WARNING sets the state but is not an escalation.
      expect(text).toContain('forge_guardrail_state{scope="tenant:acme",tenant="acme"} 1\n');
      expect(text).toContain('forge_stop_condition_hard_stop_count{scope="tenant:acme",tenant="acme"} 1\n');
      expect(text).toContain('forge_stop_condition_warning_count{scope="tenant:acme",tenant="acme"} 0\n');
    } finally {
      await m.shutdown();
    }
  });

  it('folds scopes beyond the cap into one overflow series', async () => {
    const m = new ForgeMetrics({ maxScopes: 3, maxTenants: 2 });
    try {
      for (let i = 0; i < 10; i++) m.setScopeTotals(`run:ten/r${i}`, { dayMicros: i, weekMicros: 0, runMicros: 0, components: zeroComponents() });
      const lines = (await m.render()).split('\n').filter((l) => l.startsWith('forge_cost_total_day_usd{'));
      expect(lines.length).toBe(4);
      expect(lines.filter((l) => l.includes(`scope="${OVERFLOW_LABEL}"`)).length).toBe(1);
    } finally {
      await m.shutdown();
    }
  });
});
