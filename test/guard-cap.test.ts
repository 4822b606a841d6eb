import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startForge, type RunningForge } from '../cli/forge-process.ts';

// The cap when actual costs exceed estimates: reservations of what a task can cost (priced bounds), top-ups
// during a task, overruns booked and flagged, the settle moving the live state, and estimates scaled by
// what the task type's history says (kept across restarts).

const dirs: string[] = [];
const open: RunningForge[] = [];
afterAll(async () => {
  for (const f of open.splice(0)) await f.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const BANDS =
  'global:\n  B_day_soft: 100000\n  B_day_hard: 100000\n  B_week_soft: 100000\n  B_week_hard: 100000\n  B_run_cap: 100000\n  B_unit_cap: 1000\n' +
  'tenants:\n  capt:\n    B_day_soft: 80\n    B_day_hard: 100\n    B_week_soft: 400\n    B_week_hard: 500\n    B_run_cap: 1000\n    B_unit_cap: 200\n';
const PRICING =
  'compute:\n  environments:\n    cpu: "0.40"\nstorage:\n  gb_stored: "0"\n  gb_month_usd: "0"\n  expected_tasks_day: 1\n' +
  'llm:\n  models:\n    gpt-4o-mini: { input_per_mtok_usd: "0.15", output_per_mtok_usd: "0.60" }\nnative_price:\n  source: fixed\n  usd: "2500"\n';

function world() {
  const dir = mkdtempSync(join(tmpdir(), 'forge-cap-'));
  dirs.push(dir);
  writeFileSync(join(dir, 'bands.yaml'), BANDS);
  writeFileSync(join(dir, 'pricing.yaml'), PRICING);
  const clock = { now: Date.parse('2026-03-10T10:00:00Z') };
  const start = async () => {
    for (const f of open.splice(0)) await f.close();
    const forge = await startForge({
      env: { FORGE_DATA_DIR: join(dir, 'data'), FORGE_PORT: '0', FORGE_BUDGETS_FILE: join(dir, 'bands.yaml'), FORGE_PRICING_FILE: join(dir, 'pricing.yaml'), FORGE_LOG_LEVEL: 'silent' },
      now: () => clock.now,
    });
    open.push(forge);
    const key = (await forge.keys.create({ name: 'runner', roles: ['runner', 'oncall', 'auditor'], tenantId: null })).key;
    const post = async (url: string, payload: unknown) => {
      const r = await forge.app.inject({ method: 'POST', url, headers: { authorization: `Bearer ${key}` }, payload: payload as Record<string, unknown> });
      return { status: r.statusCode, json: r.json() as Record<string, unknown> };
    };
    const get = async (url: string) => (await forge.app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${key}` } })).json() as Record<string, unknown>;
    return { forge, post, get };
  };
  return { clock, start };
}

const admit = (extra: Record<string, unknown>) => ({ tenant_id: 'capt', run_id: 'r1', task_type: 'eval', ...extra });

describe('reserve what a task can cost', () => {
  it('prices the bounds from the price book and reserves their sum; a term it cannot price is refused', async () => {
    const { post } = await world().start();
    // 0.50 fee + gpt-4o-mini 10,000 prompt x 0.15 + 20,000 max x 0.60 per 1M (0.0015 + 0.012) + 2 h x 0.40
    // + gas 100,000 x 20 gwei x 2,500 USD (5.00) = 0.50 + 0.0135 + 0.80 + 5.00 = 6.3135 USD
    const ok = await post('/v1/admissions', admit({ bounds: { evaluation_fee_usd: '0.50', llm: [{ model: 'gpt-4o-mini', prompt_tokens: 10_000, max_tokens: 20_000 }], compute_hours: '2', environment: 'cpu', gas_limit: 100_000, max_fee_gwei: '20' } }));
    expect(ok.json).toMatchObject({ decision: 'allow', estimate_source: 'bounds', estimated_cost_usd: '6.3135' });
    const bad = await post('/v1/admissions', admit({ bounds: { llm: [{ model: 'no-such-model', prompt_tokens: 1, max_tokens: 1 }] } }));
    expect(bad.status).toBe(400);
    expect(bad.json).toMatchObject({ error: { code: 'FORGE_ERR_VALIDATION', field: 'bounds.llm[0].model' } });
    const env = await post('/v1/admissions', admit({ bounds: { compute_hours: '1', environment: 'tpu' } }));
    expect(env.json).toMatchObject({ error: { field: 'bounds.environment' } });
  });
});

describe('top-ups and overruns', () => {
  it('a task asks for more before spending it and is refused at the cap; a settle above the reservation is flagged and moves the state at once', async () => {
    const w = world();
    const { forge, post, get } = await w.start();
    const a = await post('/v1/admissions', admit({ estimated_cost_usd: '60' }));
    expect(a.json.decision).toBe('allow');
    const id = String(a.json.reservation_id);
    // 60 reserved of the 100 USD day cap: a top-up of 30 fits (used 0 + reserved 60 < 100) ...
    expect((await post(`/v1/admissions/${id}/extend`, { additional_usd: '30' })).json).toMatchObject({ decision: 'allow', reserved_usd: '90' });
    // ... and takes the reservation to 120 with one more (90 < 100: at most one amount past the cap) ...
    expect((await post(`/v1/admissions/${id}/extend`, { additional_usd: '30' })).json).toMatchObject({ decision: 'allow', reserved_usd: '120' });
    // ... after which nothing more fits: refused, with the cap named.
    const refused = await post(`/v1/admissions/${id}/extend`, { additional_usd: '1' });
    expect(refused.json).toMatchObject({ decision: 'deny', scope: 'tenant:capt', reason: expect.stringMatching(/day hard cap of tenant:capt is fully reserved/) });

    // A second task reserves 5 and spends 30 without asking: booked, flagged, and the settle moves the live
    // state (no cost event needed): 30 USD spent today.
    const b = await post('/v1/admissions', admit({ run_id: 'r2', estimated_cost_usd: '5' }));
    expect(b.json.decision).toBe('deny'); // the first task holds the whole band
    const settle1 = await post(`/v1/admissions/${id}/settle`, { actual_cost_usd: '110', event_id: 'cap-e1' });
    expect(settle1.json).toMatchObject({ status: 'settled', reserved_usd: '120', overrun: false });
    // 110 >= the 100 USD hard band (and >= 110 emergency): the settle itself stopped the tenant.
    await forge.guardrail.drain();
    expect((await get('/v1/guardrail/tenant:capt')).state).toBe('EMERGENCY_STOP');

    const c = await post('/v1/admissions', admit({ tenant_id: 'capt', run_id: 'r3', estimated_cost_usd: '1' }));
    expect(c.json).toMatchObject({ decision: 'deny', state: 'EMERGENCY_STOP' });
  });

  it('an overrun (actual above what was reserved, no top-up) is booked, flagged in guardrail_events and re-evaluated', async () => {
    const { forge, post, get } = await world().start();
    const a = await post('/v1/admissions', admit({ estimated_cost_usd: '5' }));
    const s = await post(`/v1/admissions/${String(a.json.reservation_id)}/settle`, { actual_cost_usd: '85', event_id: 'over-1' });
    expect(s.json).toMatchObject({ status: 'settled', reserved_usd: '5', overrun: true });
    await forge.guardrail.drain();
    const v = await get('/v1/guardrail/tenant:capt');
    expect(v).toMatchObject({ state: 'WARNING', spend: expect.objectContaining({ day_usd: '85' }) }); // 85 >= the 80 soft band
    const rows = await forge.store.guardrailEvents({ scope: { tenantId: 'capt' }, from: 0, to: Date.parse('2027-01-01T00:00:00Z'), kinds: ['overrun'] });
    expect(rows).toHaveLength(1);
    expect(rows[0]!.details).toMatchObject({ reserved_usd: '5', actual_usd: '85', event_id: 'over-1' });
    // The task's cost event, arriving afterwards with the same id, is not counted again.
    const ev = await forge.app.inject({
      method: 'POST',
      url: '/v1/events',
      headers: { authorization: `Bearer ${(await forge.keys.create({ name: 'r', roles: ['runner'], tenantId: null })).key}` },
      payload: { event_id: 'over-1', tenant_id: 'capt', run_id: 'r1', task_id: 't1', task_type: 'eval', environment: 'cpu', status: 'success', finalized_at: new Date(Date.parse('2026-03-10T10:00:00Z')).toISOString(), rli_eval_usd: '85', task_hours: '0' },
    });
    expect(ev.statusCode, ev.body).toBe(200);
    await forge.guardrail.drain();
    expect(((await get('/v1/guardrail/tenant:capt')).spend as { day_usd: string }).day_usd).toBe('85');
  });
});

describe('learned estimates', () => {
  it('a runner that under-estimates by a steady 1.5x is corrected after a few tasks, and the correction survives a restart', async () => {
    const w = world();
    let { forge, post } = await w.start();
    for (let i = 0; i < 3; i++) {
      const a = await post('/v1/admissions', admit({ run_id: `l${i}`, task_type: 'llm-heavy', estimated_cost_usd: '2' }));
      expect(a.json).toMatchObject({ decision: 'allow', estimate_source: 'runner', estimated_cost_usd: '2' });
      await post(`/v1/admissions/${String(a.json.reservation_id)}/settle`, { actual_cost_usd: '3', event_id: `l-${i}` });
    }
    // Three tasks at 1.5x: the next estimate of 2 USD reserves 3 USD.
    const scaled = await post('/v1/admissions', admit({ run_id: 'l9', task_type: 'llm-heavy', estimated_cost_usd: '2' }));
    expect(scaled.json).toMatchObject({ decision: 'allow', estimate_source: 'runner_learned', estimated_cost_usd: '3', learned_factor: 1.5 });
    // Another task type has no history yet: the runner's estimate as sent (the cold start).
    expect((await post('/v1/admissions', admit({ run_id: 'l10', task_type: 'other', estimated_cost_usd: '2' }))).json).toMatchObject({ estimate_source: 'runner', estimated_cost_usd: '2' });
    // No estimate at all: a high quantile of the task type's actual costs (3 USD each).
    expect((await post('/v1/admissions', admit({ run_id: 'l12', task_type: 'llm-heavy' }))).json).toMatchObject({ estimate_source: 'learned_p99', estimated_cost_usd: '3' });
    await forge.close();
    open.splice(0);

    ({ forge, post } = await w.start());
    const again = await post('/v1/admissions', admit({ run_id: 'l11', task_type: 'llm-heavy', estimated_cost_usd: '2' }));
    expect(again.json).toMatchObject({ estimate_source: 'runner_learned', estimated_cost_usd: '3' });
  });
});
