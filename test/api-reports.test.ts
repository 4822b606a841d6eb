import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startForge, type RunningForge } from '../cli/forge-process.ts';

const NOW = Date.parse('2026-03-03T12:00:00Z');
let forge: RunningForge;
const logged: string[] = [];
let admin: string;
let finance: string;
const auth = (k: string) => ({ authorization: `Bearer ${k}` });

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'forge-reports-'));
  writeFileSync(join(dir, 'bands.yaml'), 'global:\n  B_day_soft: 25\n  B_day_hard: 100\n  B_week_soft: 400\n  B_week_hard: 500\n  B_run_cap: 1000\n  B_unit_cap: 100\ntenants:\n  demo: {}\n  other: {}\n');
  writeFileSync(
    join(dir, 'pricing.yaml'),
    'compute:\n  environments:\n    cpu: "0.40"\nstorage:\n  gb_stored: "0"\n  gb_month_usd: "0"\n  expected_tasks_day: 1\nllm:\n  models:\n    gpt-4o-mini: { input_per_mtok_usd: "0.15", output_per_mtok_usd: "0.60" }\nnative_price:\n  source: fixed\n  usd: "2500"\n',
  );
  forge = await startForge({
    env: { FORGE_DATA_DIR: join(dir, 'data'), FORGE_PORT: '0', FORGE_BUDGETS_FILE: join(dir, 'bands.yaml'), FORGE_PRICING_FILE: join(dir, 'pricing.yaml'), FORGE_LOG_LEVEL: 'silent' },
    now: () => NOW,
    log: (l) => logged.push(l),
  });
  admin = (await forge.keys.create({ name: 'admin', roles: ['admin'], tenantId: null })).key;
  finance = (await forge.keys.create({ name: 'fin', roles: ['finance', 'auditor'], tenantId: 'demo' })).key;
  const ev = (id: string, day: string, run: string, type: string, extra: Record<string, unknown>) => ({
    event_id: id, tenant_id: 'demo', run_id: run, task_id: id, task_type: type, environment: 'cpu', status: 'success', finalized_at: `${day}T10:00:00Z`, rli_eval_usd: '0', task_hours: '0', ...extra,
  });
  const r = await forge.app.inject({
    method: 'POST',
    url: '/v1/events',
    headers: auth(admin),
    payload: {
      events: [
        ev('e1', '2026-03-01', 'r1', 'eval', { rli_eval_usd: '10', task_hours: '5' }), // 10 + 2 = 12
        ev('e2', '2026-03-02', 'r1', 'eval', { rli_eval_usd: '20' }), // 20
        ev('e3', '2026-03-02', 'r2', 'submit', { rli_eval_usd: '5', task_hours: '10', status: 'failed' }), // 5 + 4 = 9
        ev('e4', '2026-03-03', 'r1', 'eval', { rli_eval_usd: '30', llm: [{ model: 'gpt-4o-mini', input_tokens: 1_000_000, output_tokens: 1_000_000 }] }), // 30.75
      ],
    },
  });
  expect(r.statusCode, r.body).toBe(200);
  await forge.guardrail.drain();
});
afterAll(async () => {
  await forge?.close();
  expect(logged, 'background errors').toEqual([]);
});

async function report(name: string, qs: string, key = finance) {
  const r = await forge.app.inject({ method: 'GET', url: `/v1/reports/${name}?${qs}`, headers: auth(key) });
  expect(r.statusCode, r.body).toBe(200);
  return r;
}

describe('reports over seeded events (hand-checked)', () => {
  it('daily burn with soft and hard lines, JSON and CSV', async () => {
    const j = (await report('daily-burn', 'scope=tenant:demo&days=3')).json();
    expect(j.rows).toEqual([
      { day: '2026-03-01', total_usd: '12', day_soft_usd: '25', day_hard_usd: '100', tasks: 1, failed: 0 },
      { day: '2026-03-02', total_usd: '29', day_soft_usd: '25', day_hard_usd: '100', tasks: 2, failed: 1 },
      { day: '2026-03-03', total_usd: '30.75', day_soft_usd: '25', day_hard_usd: '100', tasks: 1, failed: 0 },
    ]);
    const csv = await report('daily-burn', 'scope=tenant:demo&days=3&format=csv');
    expect(csv.headers['content-type']).toMatch(/text\/csv/);
    expect(csv.body.split('\n')[0]).toBe('day,total_usd,day_soft_usd,day_hard_usd,tasks,failed');
    expect(csv.body.split('\n')[2]).toBe('2026-03-02,29,25,100,2,1');
  });
  it('composition by component', async () => {
    const j = (await report('composition', 'scope=tenant:demo')).json();
    expect(j.summary.total_usd).toBe('71.75');
    expect(j.rows).toEqual([
      { component: 'rli', usd: '65', share: 0.9059 },
      { component: 'gas', usd: '0', share: 0 },
      { component: 'compute', usd: '6', share: 0.0836 },
      { component: 'storage', usd: '0', share: 0 },
      { component: 'llm', usd: '0.75', share: 0.0105 },
      { component: 'bandwidth', usd: '0', share: 0 },
    ]);
  });
  it('unit economics per operation and per successful task', async () => {
    const j = (await report('unit-economics', 'scope=tenant:demo&days=2')).json();
    expect(j.rows[0]).toEqual({ day: '2026-03-02', total_usd: '29', tasks: 2, succeeded: 1, cost_per_task_usd: '14.5', cost_per_success_usd: '29' });
  });
  it('utilisation and runway', async () => {
    const j = (await report('runway', 'scope=tenant:demo')).json();
    expect(j.rows[0]).toEqual({ run_spend_usd: '71.75', run_cap_usd: '1000', utilisation: 0.0718, remaining_usd: '928.25', avg_daily_burn_7d_usd: '10.25', runway_days: 90.56 });
  });
  it('efficiency by task type, model and environment', async () => {
    const j = (await report('efficiency', 'scope=tenant:demo')).json();
    expect(j.rows).toEqual(
      expect.arrayContaining([
        { dimension: 'task_type', key: 'eval', total_usd: '62.75', tasks: 3, succeeded: 3, failed: 0, cost_per_task_usd: '20.916666', cost_per_success_usd: '20.916666' },
        { dimension: 'task_type', key: 'submit', total_usd: '9', tasks: 1, succeeded: 0, failed: 1, cost_per_task_usd: '9', cost_per_success_usd: null },
        { dimension: 'environment', key: 'cpu', total_usd: '71.75', tasks: 4, succeeded: 3, failed: 1, cost_per_task_usd: '17.9375', cost_per_success_usd: '23.916666' },
      ]),
    );
  });
  it('stop-condition counts in the last 24 h (the late failed task of 03-02 stopped the tenant once)', async () => {
    // e3 arrives at 03-03 for 03-02: that day stands at 29 USD (>= the 25 USD soft band) with 1 of 2 tasks
    // failed (0.5 > 0.2), so failure_burn holds for 03-02: HARD_STOP, checked against its own day's totals.
    const j = (await report('stop-conditions', 'scope=tenant:demo')).json();
    expect(j.rows).toEqual([
      { state: 'WARNING', count: 0 },
      { state: 'HARD_STOP', count: 1 },
      { state: 'EMERGENCY_STOP', count: 0 },
    ]);
  });
  it("a tenant-bound finance key cannot read another tenant's reports", async () => {
    const r = await forge.app.inject({ method: 'GET', url: '/v1/reports/daily-burn?scope=tenant:other', headers: auth(finance) });
    expect(r.statusCode).toBe(403);
    const g = await forge.app.inject({ method: 'GET', url: '/v1/reports/daily-burn?scope=global', headers: auth(finance) });
    expect(g.statusCode).toBe(403);
  });
});

describe('audit', () => {
  it('lists events by tenant, run and time, and the chain verifies', async () => {
    const r = await forge.app.inject({ method: 'GET', url: '/v1/audit/events?tenant_id=demo&run_id=r1&from=2026-03-01T00:00:00Z&to=2026-03-04T00:00:00Z', headers: auth(finance) });
    expect(r.statusCode).toBe(200);
    expect(r.json().events.map((e: { eventId: string }) => e.eventId)).toEqual(['e1', 'e2', 'e4']);
    const v = await forge.app.inject({ method: 'GET', url: '/v1/audit/verify?tenant_id=demo', headers: auth(finance) });
    // One stream per writer process: a single process writes stream 0.
    expect(v.json()).toMatchObject({ ok: true, tenant_id: 'demo', logs: { cost_events: { ok: true, checked: 4, streams: [{ ok: true, stream: 0, checked: 4, recordedHead: { seq: 4 } }] }, guardrail_events: { ok: true, log: 'guardrail_events' } } });
    expect(v.json().logs.guardrail_events.checked).toBeGreaterThan(0);
    // The global guardrail stream needs a key for every tenant.
    expect((await forge.app.inject({ method: 'GET', url: '/v1/audit/verify', headers: auth(finance) })).statusCode).toBe(403);
    const g0 = await forge.app.inject({ method: 'GET', url: '/v1/audit/verify', headers: auth(admin) });
    expect(g0.json()).toMatchObject({ ok: true, tenant_id: null, logs: { guardrail_events: { ok: true } } });
    const other = await forge.app.inject({ method: 'GET', url: '/v1/audit/events?tenant_id=other', headers: auth(finance) });
    expect(other.statusCode).toBe(403);
    const g = await forge.app.inject({ method: 'GET', url: '/v1/audit/guardrail-events?scope=tenant:demo&from=2026-03-01T00:00:00Z&to=2026-03-04T00:00:00Z', headers: auth(finance) });
    const events = g.json().events as Array<{ kind: string; state: string; reason: string; details: { day?: string } }>;
    expect(events.find((e) => e.kind === 'state_change')).toMatchObject({ state: 'HARD_STOP', reason: expect.stringContaining('failure_burn') });
    // The hard day is the late task's own day, recorded once.
    expect(events.filter((e) => e.kind === 'hard_day').map((e) => e.details.day)).toEqual(['2026-03-02']);
  });
});
