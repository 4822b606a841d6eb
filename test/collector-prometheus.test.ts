import { zeroComponents } from '../rules/index.ts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPrometheus, type PrometheusServer } from './helpers/prometheus.ts';
import { buildCollectorApp, freshTenant, MemorySink, rawEvent, type TestApp } from './collector-fixtures.ts';

// A real Prometheus scrapes the collector's live /metrics (1 s interval) and PromQL through its HTTP API
// returns what the collector counted, under the canonical names.
let t: TestApp;
let prom: PrometheusServer;

beforeAll(async () => {
  t = await buildCollectorApp({ sink: new MemorySink() });
  const url = new URL(await t.app.listen({ host: '127.0.0.1', port: 0 }));
  prom = await startPrometheus({ targets: [url.host], scrapeIntervalS: 1 });
});

afterAll(async () => {
  await prom?.stop();
  await t?.app.close();
});

describe('Prometheus scrapes the collector', () => {
  it('sees tasks, per-operation costs and scope totals with the values Forge computed', async () => {
    const tn = freshTenant();
    t.tenants.add(tn);
    const now = Date.now();
    const events = [rawEvent(tn, { finalized_at: now }), rawEvent(tn, { finalized_at: now, status: 'failed' }), rawEvent(tn, { finalized_at: now, status: 'retried' })];
    const res = await t.app.inject({ method: 'POST', url: '/v1/events', payload: { events } });
    expect(res.statusCode, res.body).toBe(200);
    t.metrics.setScopeTotals(`tenant:${tn}`, { dayMicros: 13_138_500, weekMicros: 20_000_000, runMicros: 13_138_500, components: { ...zeroComponents(), rli: 300_000, gas: 4_725_000, compute: 1_200_000, storage: 6_900_000, llm: 13_500 } });

    const finalized = await prom.waitFor(`forge_tasks_finalized_count{tenant="${tn}"}`, (s) => s.length === 1 && s[0]!.value === 3);
    expect(finalized[0]!.metric.job).toBe('forge');
    const failed = await prom.query(`forge_tasks_failed_count{tenant="${tn}"} + forge_tasks_retried_count{tenant="${tn}"}`);
    expect(failed[0]!.value).toBe(2);
    // 3 x Cost_total_op = 3 x 4.3795 USD
    const opSum = await prom.query(`forge_cost_total_op_usd_sum{tenant="${tn}"}`);
    expect(opSum[0]!.value).toBeCloseTo(13.1385, 9);
    const opCount = await prom.query(`forge_cost_total_op_usd_count{tenant="${tn}"}`);
    expect(opCount[0]!.value).toBe(3);
    const day = await prom.waitFor(`forge_cost_total_day_usd{scope="tenant:${tn}"}`, (s) => s.length === 1);
    expect(day[0]!.value).toBeCloseTo(13.1385, 9);
    expect(day[0]!.metric.tenant).toBe(tn);
    const gasDay = await prom.query(`forge_cost_gas_day_usd{scope="tenant:${tn}"}`);
    expect(gasDay[0]!.value).toBeCloseTo(4.725, 9);
  });
});
