import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startForge, type RunningForge } from '../cli/forge-process.ts';
import { PLAIN_PRICING } from './helpers/forge-process.ts';

// A resent event id is never counted twice, whatever its timestamp: `forge start` on a real embedded store,
// events over HTTP. A resend with another event time (a retry that re-stamps the time) or another body is
// refused with 409 FORGE_ERR_EVENT_ID_CONFLICT naming event_id, before and after a restart; an identical
// resend is a duplicate. Totals, reports, the control state rebuilt at start and the chain stay as they were.

const dirs: string[] = [];
const open: RunningForge[] = [];
afterAll(async () => {
  for (const o of open.splice(0)) await o.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const BANDS =
  'global:\n  B_day_soft: 100000\n  B_day_hard: 100000\n  B_week_soft: 100000\n  B_week_hard: 100000\n  B_run_cap: 100000\n  B_unit_cap: 1000\n' +
  'tenants:\n  demo:\n    B_day_soft: 80\n    B_day_hard: 100\n    B_week_soft: 400\n    B_week_hard: 500\n    B_run_cap: 1000\n    B_unit_cap: 10\n    K: 3\n';
const NOW = Date.parse('2026-03-10T10:00:00Z');
const HOUR = 3_600_000;

function world() {
  const dir = mkdtempSync(join(tmpdir(), 'forge-event-ids-'));
  dirs.push(dir);
  writeFileSync(join(dir, 'bands.yaml'), BANDS);
  writeFileSync(join(dir, 'pricing.yaml'), PLAIN_PRICING);
  const logged: string[] = [];
  const start = async (): Promise<RunningForge & { admin: string }> => {
    for (const o of open.splice(0)) await o.close();
    const forge = await startForge({
      env: { FORGE_DATA_DIR: join(dir, 'data'), FORGE_PORT: '0', FORGE_BUDGETS_FILE: join(dir, 'bands.yaml'), FORGE_PRICING_FILE: join(dir, 'pricing.yaml'), FORGE_LOG_LEVEL: 'silent' },
      now: () => NOW,
      log: (l) => logged.push(l),
    });
    const admin = (await forge.keys.create({ name: 'admin', roles: ['admin'], tenantId: null })).key;
    open.push(forge);
    return Object.assign(forge, { admin });
  };
  return { logged, start };
}

function event(id: string, at: number, usd = '5') {
  return { event_id: id, tenant_id: 'demo', run_id: 'r1', task_id: id, task_type: 'eval', environment: 'cpu', status: 'success', finalized_at: new Date(at).toISOString(), rli_eval_usd: usd, task_hours: '0' };
}

type Forge = RunningForge & { admin: string };

async function post(f: Forge, payload: object) {
  const r = await f.app.inject({ method: 'POST', url: '/v1/events', headers: { authorization: `Bearer ${f.admin}` }, payload });
  await f.guardrail.drain();
  return r;
}

/** Everything a double count would show in: live control state, the log's totals, a report, the chain. */
async function picture(f: Forge) {
  const get = async (url: string) => {
    const r = await f.app.inject({ method: 'GET', url, headers: { authorization: `Bearer ${f.admin}` } });
    expect(r.statusCode, r.body).toBe(200);
    return r.json() as Record<string, unknown>;
  };
  const view = (await get('/v1/guardrail/tenant%3Ademo')) as { state: string; spend: unknown };
  const run = (await get('/v1/guardrail/' + encodeURIComponent('run:demo/r1'))) as { spend: unknown };
  const burn = (await get('/v1/reports/daily-burn?scope=tenant:demo&days=2')) as { rows: unknown[] };
  const totals = await f.store.totals({ tenantId: 'demo' }, { from: NOW - 10 * 24 * HOUR, to: NOW + HOUR });
  const verify = (await get('/v1/audit/verify?tenant_id=demo')) as { ok: boolean; logs: { cost_events: { checked: number } } };
  return { state: view.state, spend: view.spend, run: run.spend, burn: burn.rows, totals, ok: verify.ok, checked: verify.logs.cost_events.checked };
}

describe('a resent event id', () => {
  it('with a shifted time is refused before and after a restart; totals, control state and chain stay as they were', async () => {
    const w = world();
    let f = await w.start();
    const first = Array.from({ length: 17 }, (_, i) => event(`e-${i}`, NOW - HOUR + i * 1000));
    const r0 = await post(f, { events: first });
    expect(r0.statusCode, r0.body).toBe(200);
    const before = await picture(f);
    expect(before).toMatchObject({ state: 'WARNING', ok: true, checked: 17 }); // 85 of the 80 soft band
    expect(before.totals.tasks).toBe(17);

    // The same event, its time re-stamped by a retry: an hour earlier, and on the day before.
    for (const at of [NOW - 2 * HOUR, NOW - 26 * HOUR]) {
      const r = await post(f, event('e-3', at));
      expect(r.statusCode, r.body).toBe(409);
      expect(r.json()).toMatchObject({ error: { code: 'FORGE_ERR_EVENT_ID_CONFLICT', field: 'event_id' } });
      expect(r.json().error.message).toMatch(/e-3.*already accepted for another event/);
    }
    // An identical resend: a duplicate, accepted.
    const same = await post(f, first[3]!);
    expect(same.statusCode, same.body).toBe(200);
    expect(same.json()).toMatchObject({ accepted: [{ event_id: 'e-3', duplicate: true }] });
    expect(await picture(f)).toEqual(before);

    // A batch mixing a new id, an identical resend and two conflicting ones: the new one is stored, the
    // duplicate accepted, the conflicts refused by index and field (nothing of them stored).
    const mixed = await post(f, { events: [event('n-1', NOW - 30_000), first[1], event('e-2', NOW - 3 * HOUR), event('e-4', NOW - HOUR + 4000, '6')] });
    expect(mixed.statusCode, mixed.body).toBe(409);
    expect(mixed.json()).toMatchObject({
      error: {
        code: 'FORGE_ERR_EVENT_ID_CONFLICT',
        rejected: [
          { index: 2, code: 'FORGE_ERR_EVENT_ID_CONFLICT', field: 'events[2].event_id' },
          { index: 3, code: 'FORGE_ERR_EVENT_ID_CONFLICT', field: 'events[3].event_id' },
        ],
      },
      accepted: [
        { index: 0, event_id: 'n-1', duplicate: false },
        { index: 1, event_id: 'e-1', duplicate: true },
      ],
    });
    // A conflicting id next to an invalid event: 400 (the request has more than conflicts wrong), both named.
    const invalid = await post(f, { events: [event('e-5', NOW - 5 * HOUR), { ...event('bad', NOW), status: 'nope' }] });
    expect(invalid.statusCode, invalid.body).toBe(400);
    expect(invalid.json().error.rejected.map((x: { code: string; field: string }) => [x.code, x.field])).toEqual([
      ['FORGE_ERR_EVENT_ID_CONFLICT', 'events[0].event_id'],
      ['FORGE_ERR_VALIDATION', 'events[1].status'],
    ]);
    const withNew = await picture(f);
    expect(withNew).toMatchObject({ state: 'WARNING', ok: true, checked: 18 });
    expect(withNew.totals.tasks).toBe(18);
    expect(withNew.totals.totalMicros).toBe(before.totals.totalMicros + 5_000_000);
    await f.close();

    // A restart: the control state comes back from the snapshot and the log, with nothing counted twice.
    f = await w.start();
    expect(await picture(f)).toEqual(withNew);
    const again = await post(f, event('e-7', NOW - 7 * HOUR));
    expect(again.statusCode, again.body).toBe(409);
    expect(again.json()).toMatchObject({ error: { code: 'FORGE_ERR_EVENT_ID_CONFLICT', field: 'event_id' } });
    const dup = await post(f, { events: first });
    expect(dup.statusCode, dup.body).toBe(200);
    expect(dup.json().accepted.every((a: { duplicate: boolean }) => a.duplicate)).toBe(true);
    expect(await picture(f)).toEqual(withNew);
    await f.close();
    expect(w.logged).toEqual([]);
  });
});
