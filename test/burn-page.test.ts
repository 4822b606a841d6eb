import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BurnData } from '../dashboards/index.ts';
import { makeBurnPageApp, type BurnPageApp } from './helpers/burn-page-app.ts';

// The burn page's routes in the whole API app (real API keys): who may read what, and what the JSON says
// for the hand-checked history of helpers/burn-seed.ts.

let t: BurnPageApp;

beforeAll(async () => {
  t = await makeBurnPageApp('forge-burn-inject');
}, 120_000);

afterAll(async () => {
  await t?.close();
});

const get = (url: string, key?: string) => t.api.app.inject({ method: 'GET', url, headers: key ? { authorization: `Bearer ${key}` } : {} });

describe('burn page: the page and its assets', () => {
  it('GET / is public HTML with a strict CSP; the script and chart.js are served', async () => {
    const page = await get('/');
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toMatch(/text\/html/);
    expect(page.headers['content-security-policy']).toContain("script-src 'self'");
    expect(page.body).toContain('id="daily-chart"');
    expect(page.body).not.toMatch(/<script>[^<]/);
    const js = await get('/burn/page.js');
    expect(js.statusCode).toBe(200);
    expect(js.body).toContain('/v1/burn/data');
    const chart = await get('/burn/chart.umd.js');
    expect(chart.statusCode).toBe(200);
    expect(chart.body.length).toBeGreaterThan(100_000);
    expect(chart.body).toContain('Chart');
  });
});

describe('burn page: access to the data', () => {
  it('needs a key, the finance role, and the key\'s own tenant', async () => {
    const url = `/v1/burn/data?tenant=${t.tenant}`;
    expect((await get(url)).statusCode).toBe(401);
    const runner = await get(url, t.api.key(['runner'], t.tenant));
    expect(runner.statusCode).toBe(403);
    expect(runner.json().error.code).toBe('FORGE_ERR_FORBIDDEN_ROLE');
    const elsewhere = await get(url, t.api.key(['finance'], t.other));
    expect(elsewhere.statusCode).toBe(403);
    expect(elsewhere.json().error.code).toBe('FORGE_ERR_FORBIDDEN_TENANT');
    expect(elsewhere.body).not.toContain('totalUsd');
    expect((await get(url, t.api.key(['finance'], t.tenant))).statusCode).toBe(200);
    expect((await get(url, t.api.key(['admin']))).statusCode).toBe(200);
  });

  it('a tenant-bound key defaults to its tenant and never sees the global scope', async () => {
    const res = await get('/v1/burn/data', t.api.key(['finance'], t.tenant));
    expect(res.statusCode).toBe(200);
    const d = res.json<BurnData>();
    expect(d.tenant).toBe(t.tenant);
    expect(d.states.map((s) => s.scope)).not.toContain('global');
    expect(d.states.every((s) => s.scope === `tenant:${t.tenant}` || s.scope.startsWith(`run:${t.tenant}/`))).toBe(true);
  });

  it('an all-tenants key must name the tenant, and sees the global scope too', async () => {
    const key = t.api.key(['finance']);
    const missing = await get('/v1/burn/data', key);
    expect(missing.statusCode).toBe(400);
    expect(missing.json().error.field).toBe('tenant');
    const d = (await get(`/v1/burn/data?tenant=${t.tenant}`, key)).json<BurnData>();
    expect(d.states[0]).toEqual({ scope: 'global', state: 'NORMAL' });
  });

  it('bad input is refused naming the field', async () => {
    const key = t.api.key(['finance']);
    const bad = await get(`/v1/burn/data?tenant=${encodeURIComponent("x' OR 1=1")}`, key);
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error.field).toContain('tenant');
    const extra = await get(`/v1/burn/data?tenant=${t.tenant}&limit=5`, key);
    expect(extra.statusCode).toBe(400);
    expect(extra.json().error.message).toContain('limit');
  });
});

describe('burn page: the numbers', () => {
  it('the tenant: states, bands, 30 days of burn, unit economics, runway, stop conditions', async () => {
    const d = (await get('/v1/burn/data', t.api.key(['finance'], t.tenant))).json<BurnData>();
    expect(d.scope).toBe(`tenant:${t.tenant}`);
    // The guardrail saw e4 (retried, 1.23 USD >= B_day_soft): failure rate 1/1 > 0.2 with day >= soft.
    expect(d.states).toEqual([
      { scope: `tenant:${t.tenant}`, state: 'HARD_STOP' },
      { scope: `run:${t.tenant}/r1`, state: 'HARD_STOP' },
    ]);
    expect(d.bands).toEqual({ daySoftUsd: 1, dayHardUsd: 2, weekSoftUsd: 40, weekHardUsd: 50, runCapUsd: 60, unitCapUsd: 10 });
    expect(d.daily).toHaveLength(30);
    expect(d.daily[0]!.day).toBe('2026-02-09');
    expect(d.daily.at(-1)).toEqual({ day: '2026-03-10', totalUsd: 1.234567 });
    // In the 30 days: e5 (02-28) + e1..e4; e6 is after now; e3 once although its row is in the table twice.
    expect(d.daily.reduce((s, x) => s + x.totalUsd, 0)).toBeCloseTo(17.744567, 9);
    expect(d.composition.find((x) => x.day === '2026-03-02')).toEqual({ day: '2026-03-02', rli: 3, gas: 0.26, compute: 0.5, storage: 0.05, llm: 0.2, bandwidth: 0 });
    expect(d.unit.operations).toBe(5);
    expect(d.unit.succeeded).toBe(3);
    expect(d.unit.costPerSuccessUsd).toBeCloseTo(17.744567 / 3, 9);
    expect(d.runway.runSpendUsd).toBeCloseTo(17.744567, 9);
    expect(d.runway.weekUsd).toBeCloseTo(4.734567, 9);
    expect(d.runway.remainingUsd).toBeCloseTo(60 - 17.744567, 9);
    expect(d.runway.days).toBeCloseTo((60 - 17.744567) / (4.734567 / 7), 9);
    expect(d.stopConditions24h).toEqual({ warning: 1, hardStop: 1, emergencyStop: 0 });
    expect(d.recentStops.map((s) => s.state)).toEqual(['WARNING', 'HARD_STOP', 'EMERGENCY_STOP']);
  });

  it('one run: its own burn and the bands in force for it', async () => {
    const d = (await get('/v1/burn/data?run=r2', t.api.key(['finance'], t.tenant))).json<BurnData>();
    expect(d.scope).toBe(`run:${t.tenant}/r2`);
    expect(d.run).toBe('r2');
    expect(d.daily.reduce((s, x) => s + x.totalUsd, 0)).toBeCloseTo(2.01, 9);
    expect(d.unit).toMatchObject({ operations: 1, succeeded: 0, costPerSuccessUsd: null });
    // No burn in the last 7 days of r2: no runway projection.
    expect(d.runway.days).toBeNull();
    expect(d.stopConditions24h).toEqual({ warning: 0, hardStop: 0, emergencyStop: 0 });
  });
});
