import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startForge, type RunningForge } from '../cli/forge-process.ts';
import { PLAIN_PRICING } from './helpers/forge-process.ts';

// Every piece of control state survives a restart of `forge start` on the same data directory: live
// totals (a replay counts once), stops, lifts and their waivers, acknowledgements, budget versions, hard
// days and the unit-cap streak. A restart announces nothing that was already announced.

const dirs: string[] = [];
const open: RunningForge[] = [];
afterAll(async () => {
  for (const o of open.splice(0)) await o.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A data directory with the given bands, and a clock the test moves. */
function world(bands: string) {
  const dir = mkdtempSync(join(tmpdir(), 'forge-restart-'));
  dirs.push(dir);
  writeFileSync(join(dir, 'bands.yaml'), bands);
  writeFileSync(join(dir, 'pricing.yaml'), PLAIN_PRICING);
  const clock = { now: Date.parse('2026-03-10T10:00:00Z') };
  const logged: string[] = [];
  const start = async (): Promise<RunningForge & { admin: string }> => {
    // A failed test must not leave the embedded store locked for the next one.
    for (const o of open.splice(0)) await o.close();
    const forge = await startForge({
      env: { FORGE_DATA_DIR: join(dir, 'data'), FORGE_PORT: '0', FORGE_BUDGETS_FILE: join(dir, 'bands.yaml'), FORGE_PRICING_FILE: join(dir, 'pricing.yaml'), FORGE_LOG_LEVEL: 'silent' },
      now: () => clock.now,
      log: (l) => logged.push(l),
    });
    const admin = (await forge.keys.create({ name: 'admin', roles: ['admin'], tenantId: null })).key;
    open.push(forge);
    return Object.assign(forge, { admin });
  };
  return { dir, clock, logged, start };
}

// The demo tenant's bands (the global ones wide open, so only the tenant's stop matters).
const DEMO =
  'global:\n  B_day_soft: 100000\n  B_day_hard: 100000\n  B_week_soft: 100000\n  B_week_hard: 100000\n  B_run_cap: 100000\n  B_unit_cap: 1000\n' +
  'tenants:\n  demo:\n    B_day_soft: 80\n    B_day_hard: 100\n    B_week_soft: 400\n    B_week_hard: 500\n    B_run_cap: 1000\n    B_unit_cap: 10\n    K: 3\n';

function events(prefix: string, n: number, usd: string, at: number, run = 'r1') {
  return Array.from({ length: n }, (_, i) => ({
    event_id: `${prefix}-${i}`,
    tenant_id: 'demo',
    run_id: run,
    task_id: `${prefix}-${i}`,
    task_type: 'eval',
    environment: 'cpu',
    status: 'success',
    finalized_at: new Date(at + i).toISOString(),
    rli_eval_usd: usd,
    task_hours: '0',
  }));
}

async function ingest(f: RunningForge & { admin: string }, evs: unknown[]) {
  const r = await f.app.inject({ method: 'POST', url: '/v1/events', headers: { authorization: `Bearer ${f.admin}` }, payload: { events: evs } });
  expect(r.statusCode, r.body).toBe(200);
  await f.guardrail.drain();
  return r.json() as { accepted: Array<{ duplicate: boolean }> };
}

async function stateChanges(f: RunningForge, scope = 'tenant:demo') {
  const rows = await f.store.guardrailEvents({ scope: { tenantId: 'demo' }, scopeKey: scope, from: 0, to: Date.parse('2027-01-01T00:00:00Z') });
  return rows.filter((r) => r.kind === 'state_change');
}

async function view(f: RunningForge & { admin: string }, scope = 'tenant:demo') {
  const r = await f.app.inject({ method: 'GET', url: `/v1/guardrail/${encodeURIComponent(scope)}`, headers: { authorization: `Bearer ${f.admin}` } });
  expect(r.statusCode, r.body).toBe(200);
  return r.json() as { state: string; seq: number; acknowledged: boolean; waived: string[]; spend: { day_usd: string; run_usd: string }; bands: { day_hard: { limit_usd: string } } };
}

describe('restart', () => {
  it('a replay after a restart leaves the live totals and the state as they were, and announces nothing', async () => {
    const w = world(DEMO);
    let f = await w.start();
    const batch = events('a', 21, '5', w.clock.now);
    await ingest(f, batch);
    expect(await view(f)).toMatchObject({ state: 'HARD_STOP', spend: { day_usd: '105' } });
    const changesBefore = (await stateChanges(f)).length;
    await f.close();

    f = await w.start();
    expect(await view(f)).toMatchObject({ state: 'HARD_STOP', spend: { day_usd: '105' } });
    const replay = await ingest(f, batch); // the client retries the whole batch
    expect(replay.accepted.every((a) => a.duplicate)).toBe(true);
    expect(await view(f)).toMatchObject({ state: 'HARD_STOP', spend: { day_usd: '105', run_usd: '105' } });
    expect(await stateChanges(f)).toHaveLength(changesBefore);
    await f.close();
    expect(w.logged).toEqual([]);
  });

  it('a lift (and its waiver) and a budget version hold across a restart; nothing is paged again', async () => {
    const w = world(DEMO);
    let f = await w.start();
    await ingest(f, events('b', 21, '5', w.clock.now));
    const oncall = (await f.keys.create({ name: 'oncall', roles: ['oncall'], tenantId: null })).key;
    const lift = await f.app.inject({ method: 'POST', url: '/v1/guardrail/tenant:demo/lift', headers: { authorization: `Bearer ${oncall}` }, payload: { reason: 'approved overrun' } });
    expect(lift.statusCode, lift.body).toBe(200);
    const put = await f.app.inject({ method: 'PUT', url: '/v1/budgets/tenant:demo', headers: { authorization: `Bearer ${f.admin}` }, payload: { reason: 'raise for the pilot', B_day_hard: '200', B_day_soft: '150' } });
    expect(put.statusCode, put.body).toBe(200);
    await f.guardrail.drain();
    const lifted = await view(f);
    expect(lifted).toMatchObject({ state: 'NORMAL', bands: { day_hard: { limit_usd: '200' } } });
    const changesBefore = (await stateChanges(f)).length;
    const seqBefore = lifted.seq;
    await f.close();

    f = await w.start();
    const after = await view(f);
    expect(after).toMatchObject({ state: 'NORMAL', seq: seqBefore, bands: { day_hard: { limit_usd: '200' } } });
    const versions = await f.app.inject({ method: 'GET', url: '/v1/budgets/tenant:demo/versions', headers: { authorization: `Bearer ${f.admin}` } });
    expect(versions.json().versions.map((v: { version: number }) => v.version)).toEqual([1, 2]);
    expect(await stateChanges(f)).toHaveLength(changesBefore);
    // The raised band is in force for admissions too: 105 spent of 200.
    const adm = await f.app.inject({ method: 'POST', url: '/v1/admissions', headers: { authorization: `Bearer ${f.admin}` }, payload: { tenant_id: 'demo', run_id: 'r9', task_type: 'eval', estimated_cost_usd: '5' } });
    expect(adm.json(), adm.body).toMatchObject({ decision: "allow" });
    await f.close();
  });

  it('the admission caps hold across a restart: the spend counters come back from the log', async () => {
    const w = world(DEMO);
    let f = await w.start();
    await ingest(f, events('cap', 19, '5', w.clock.now)); // 95 of the 100 USD day cap: WARNING, no stop
    await f.close();
    f = await w.start();
    const adm = (usd: string, run: string) =>
      f.app.inject({ method: 'POST', url: '/v1/admissions', headers: { authorization: `Bearer ${f.admin}` }, payload: { tenant_id: 'demo', run_id: run, task_type: 'eval', estimated_cost_usd: usd } }).then((r) => r.json() as { decision: string; reason?: string });
    expect((await adm('10', 'c1')).decision).toBe('allow'); // 95 spent < 100: one more task fits
    const next = await adm('1', 'c2'); // 95 spent + 10 reserved >= 100
    expect(next.decision).toBe('deny');
    expect(next.reason).toMatch(/day hard cap of tenant:demo is fully reserved: spent 95 \+ reserved 10 of 100 USD/);
    await f.close();
  });

  it('an acknowledgement holds across a restart', async () => {
    const w = world(DEMO);
    let f = await w.start();
    await ingest(f, events('c', 17, '5', w.clock.now)); // 85 >= the 80 soft band
    expect(await view(f)).toMatchObject({ state: 'WARNING', acknowledged: false });
    const oncall = (await f.keys.create({ name: 'oncall', roles: ['oncall'], tenantId: null })).key;
    const ack = await f.app.inject({ method: 'POST', url: '/v1/guardrail/tenant:demo/acknowledge', headers: { authorization: `Bearer ${oncall}` }, payload: { reason: 'seen' } });
    expect(ack.statusCode, ack.body).toBe(200);
    await f.guardrail.drain();
    await f.close();
    f = await w.start();
    expect(await view(f)).toMatchObject({ state: 'WARNING', acknowledged: true });
    await f.close();
  });

  it('hard days survive restarts: hard stops on 3 consecutive UTC days escalate, with a restart each day', async () => {
    const w = world(DEMO);
    const day = 86_400_000;
    for (let d = 0; d < 3; d++) {
      const f = await w.start();
      await ingest(f, events(`d${d}`, 20, '5', w.clock.now, `run-day-${d}`)); // 100 USD: the day hard band
      const v = await view(f);
      expect(v.state).toBe(d < 2 ? 'HARD_STOP' : 'EMERGENCY_STOP');
      if (d < 2) {
        // On-call lifts each day's stop; the lift ends with that UTC day.
        const oncall = (await f.keys.create({ name: 'oncall', roles: ['oncall'], tenantId: null })).key;
        const lift = await f.app.inject({ method: 'POST', url: '/v1/guardrail/tenant:demo/lift', headers: { authorization: `Bearer ${oncall}` }, payload: { reason: 'ok for today' } });
        expect(lift.statusCode, lift.body).toBe(200);
        await f.guardrail.drain();
      }
      await f.close();
      w.clock.now += day;
    }
  });

  it('the K-consecutive unit-cap streak survives a restart', async () => {
    const w = world(DEMO);
    let f = await w.start();
    await ingest(f, events('k', 2, '10', w.clock.now)); // K = 3: two at the 10 USD cap
    expect((await view(f)).state).toBe('WARNING'); // unit_near_cap
    await f.close();
    w.clock.now += 60_000;
    f = await w.start();
    await ingest(f, events('k2', 1, '10', w.clock.now));
    const v = (await f.app.inject({ method: 'GET', url: '/v1/guardrail/tenant:demo', headers: { authorization: `Bearer ${f.admin}` } })).json() as { state: string; conditions: Array<{ id: string }> };
    expect(v.state).toBe('HARD_STOP');
    expect(v.conditions.map((c) => c.id)).toContain('unit_cap_consecutive');
    await f.close();
  });
});
