import Fastify, { type FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ForgeMetrics } from '../collector/index.ts';
import { expandPromql, PROMQL, TENANT_VARIABLE_QUERY } from '../dashboards/index.ts';
import { usdToMicros, zeroComponents } from '../rules/index.ts';
import { startPrometheus, type PrometheusServer } from './helpers/prometheus.ts';
import { freshTenant } from './helpers/store-events.ts';

// Every PromQL expression of the dashboards, run against a real Prometheus that scraped the collector's
// ForgeMetrics on a live loopback /metrics: it must parse and return the series and values expected.

const T = freshTenant('prom');
const U = freshTenant('other');
let metrics: ForgeMetrics;
let app: FastifyInstance;
let prom: PrometheusServer;

const m = (usd: number): number => usdToMicros(String(usd));
const bands = (day: number, week: number, run: number) => ({
  daySoft: m(day * 0.8),
  dayHard: m(day),
  weekSoft: m(week * 0.8),
  weekHard: m(week),
  runCap: m(run),
  unitCap: m(200),
});
const zero = zeroComponents();

beforeAll(async () => {
  metrics = new ForgeMetrics();
  app = Fastify();
  app.get('/metrics', async (_req, reply) => {
    void reply.type('text/plain; version=0.0.4');
    return metrics.render();
  });
  const url = new URL(await app.listen({ host: '127.0.0.1', port: 0 }));

  metrics.setScopeTotals(`tenant:${T}`, { dayMicros: m(40), weekMicros: m(150), runMicros: m(600), components: { ...zero, rli: m(40) } });
  metrics.setBudgets(`tenant:${T}`, bands(100, 500, 1000));
  metrics.setScopeTotals(`run:${T}/r1`, { dayMicros: m(30), weekMicros: m(100), runMicros: m(300), components: zero });
  metrics.setBudgets(`run:${T}/r1`, bands(100, 500, 400));
  metrics.setScopeTotals(`run:${T}/r2`, { dayMicros: m(10), weekMicros: m(50), runMicros: m(100), components: zero });
  metrics.setBudgets(`run:${T}/r2`, bands(100, 500, 1000));
  metrics.setScopeTotals(`tenant:${U}`, { dayMicros: m(999), weekMicros: m(999), runMicros: m(999), components: zero });
  metrics.setBudgets(`tenant:${U}`, bands(1, 1, 1));
  const change = (scope: string, state: 'NORMAL' | 'WARNING' | 'HARD_STOP' | 'EMERGENCY_STOP') =>
    metrics.recordStateChange({ scope, state, previous: 'NORMAL', seq: 1, at: Date.now(), reason: 'test', holds: [], weekMicros: 0 });
  change('global', 'HARD_STOP');
  change(`tenant:${T}`, 'WARNING');
  change(`run:${T}/r1`, 'EMERGENCY_STOP');
  change(`run:${T}/r2`, 'NORMAL');
  change(`tenant:${U}`, 'EMERGENCY_STOP');

  prom = await startPrometheus({ targets: [url.host], scrapeIntervalS: 1 });
  // Wait for a scrape that carries everything set above.
  await prom.waitFor(`forge_guardrail_state{scope="tenant:${U}"}`, (s) => s.length === 1);
}, 60_000);

afterAll(async () => {
  await prom?.stop();
  await app?.close();
  await metrics?.shutdown();
});

const q = (expr: string) => prom.query(expandPromql(expr, T));
const byScope = (s: Array<{ metric: Record<string, string>; value: number }>) => Object.fromEntries(s.map((x) => [x.metric.scope, x.value]));

describe('dashboard PromQL against Prometheus', () => {
  it('guardrail status: the tenant and each of its runs, and the global scope', async () => {
    expect(byScope(await q(PROMQL.guardrailStateTenant.expr))).toEqual({ [`tenant:${T}`]: 1, [`run:${T}/r1`]: 3, [`run:${T}/r2`]: 0 });
    expect(byScope(await q(PROMQL.guardrailStateGlobal.expr))).toEqual({ global: 2 });
  });

  it('day and week bands, live totals and the day utilisation', async () => {
    const one = async (expr: string): Promise<number> => {
      const s = await q(expr);
      expect(s, expr).toHaveLength(1);
      return s[0]!.value;
    };
    expect(await one(PROMQL.daySoft.expr)).toBeCloseTo(80, 9);
    expect(await one(PROMQL.dayHard.expr)).toBeCloseTo(100, 9);
    expect(await one(PROMQL.weekSoft.expr)).toBeCloseTo(400, 9);
    expect(await one(PROMQL.weekHard.expr)).toBeCloseTo(500, 9);
    expect(await one(PROMQL.dayLive.expr)).toBeCloseTo(40, 9);
    expect(await one(PROMQL.weekLive.expr)).toBeCloseTo(150, 9);
    expect(await one(PROMQL.dayUtilisation.expr)).toBeCloseTo(0.4, 9);
    // Runway: (1000 - 600) / (150 / 7) days.
    expect(await one(PROMQL.runwayDays.expr)).toBeCloseTo((400 * 7) / 150, 9);
  });

  it('run budget utilisation for the tenant and each run', async () => {
    expect(byScope(await q(PROMQL.runUtilisation.expr))).toEqual({ [`tenant:${T}`]: 0.6, [`run:${T}/r1`]: 0.75, [`run:${T}/r2`]: 0.1 });
  });

  it('every expression parses and has data (nothing left unchecked)', async () => {
    for (const p of Object.values(PROMQL)) expect((await q(p.expr)).length, p.id).toBeGreaterThan(0);
    // And as range queries, as the time-series panels run them.
    const now = Math.floor(Date.now() / 1000);
    for (const p of Object.values(PROMQL)) {
      const r = await fetch(`${prom.url}/api/v1/query_range?query=${encodeURIComponent(expandPromql(p.expr, T))}&start=${now - 60}&end=${now}&step=15`);
      expect(((await r.json()) as { status: string }).status, p.id).toBe('success');
    }
  });

  it('the tenant variable lists tenants, not the global scope\'s empty tenant', async () => {
    const match = /^label_values\((.+), tenant\)$/.exec(TENANT_VARIABLE_QUERY)?.[1];
    expect(match).toBeDefined();
    const r = await fetch(`${prom.url}/api/v1/label/tenant/values?match[]=${encodeURIComponent(match!)}`);
    const body = (await r.json()) as { status: string; data: string[] };
    expect(body.status).toBe('success');
    expect(body.data).toEqual(expect.arrayContaining([T, U]));
    expect(body.data).not.toContain('');
  });

  it('a broken expression would be caught', async () => {
    await expect(prom.query('max by (scope (forge_guardrail_state)')).rejects.toThrow(/PromQL/);
  });
});
