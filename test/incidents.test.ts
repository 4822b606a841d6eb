import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startForge, type RunningForge } from '../cli/forge-process.ts';
import { waitFor } from './helpers/redis.ts';

// An EMERGENCY_STOP opens an incident: on-call acknowledges it and resolves it with a note over the API; the
// record is in guardrail_events, so it is the same after a restart; tenants see only their own.
const dir = mkdtempSync(join(tmpdir(), 'forge-incidents-'));
const open: RunningForge[] = [];
afterAll(async () => {
  for (const f of open.splice(0)) await f.close();
  rmSync(dir, { recursive: true, force: true });
});

writeFileSync(
  join(dir, 'bands.yaml'),
  'global:\n  B_day_soft: 100000\n  B_day_hard: 100000\n  B_week_soft: 100000\n  B_week_hard: 100000\n  B_run_cap: 100000\n  B_unit_cap: 1000\n' +
    'tenants:\n  acme:\n    B_day_soft: 800\n    B_day_hard: 1000\n    B_week_soft: 4000\n    B_week_hard: 5000\n    B_run_cap: 10000\n    B_unit_cap: 10\n',
);

async function start(): Promise<RunningForge> {
  for (const f of open.splice(0)) await f.close();
  const f = await startForge({ env: { FORGE_DATA_DIR: join(dir, 'data'), FORGE_PORT: '0', FORGE_BUDGETS_FILE: join(dir, 'bands.yaml'), FORGE_LOG_LEVEL: 'silent' } });
  open.push(f);
  return f;
}

interface IncidentJson {
  id: string;
  scope: string;
  status: string;
  reason: string;
  acknowledged?: { actor: string; note: string };
  resolved?: { actor: string; note: string };
}

describe('incidents', () => {
  it('an EMERGENCY_STOP opens an incident; acknowledge, then resolve with a note; it holds across a restart; other tenants do not see it', async () => {
    let forge = await start();
    const runner = (await forge.keys.create({ name: 'runner', roles: ['runner'], tenantId: 'acme' })).key;
    const oncall = (await forge.keys.create({ name: 'ann', roles: ['oncall'], tenantId: 'acme' })).key;
    const stranger = (await forge.keys.create({ name: 'bob', roles: ['oncall'], tenantId: 'other' })).key;
    const call = (key: string, method: 'GET' | 'POST', url: string, payload?: unknown) =>
      forge.app.inject({ method, url, headers: { authorization: `Bearer ${key}` }, ...(payload !== undefined ? { payload: payload as Record<string, unknown> } : {}) });

    // One operation at 2x the unit cap (>= 1.25 x B_unit_cap): EMERGENCY_STOP.
    const ev = { event_id: 'big-1', tenant_id: 'acme', run_id: 'r1', task_id: 'big-1', task_type: 'eval', environment: 'cpu-standard', status: 'success', finalized_at: new Date().toISOString(), rli_eval_usd: '20', task_hours: '0' };
    expect((await call(runner, 'POST', '/v1/events', ev)).statusCode).toBe(200);
    let list: IncidentJson[] = [];
    await waitFor('incident opened', async () => {
      list = ((await call(oncall, 'GET', '/v1/incidents')).json() as { incidents: IncidentJson[] }).incidents;
      return list.some((i) => i.scope === 'tenant:acme');
    });
    const inc = list.find((i) => i.scope === 'tenant:acme')!;
    expect(inc.status).toBe('open');
    expect(inc.reason).toContain('unit_emergency');
    expect(inc.id).toMatch(/^inc_[0-9a-f]{24}$/);

    // Another tenant sees none of it and cannot act on it.
    expect(((await call(stranger, 'GET', '/v1/incidents')).json() as { incidents: unknown[] }).incidents).toEqual([]);
    expect((await call(stranger, 'POST', `/v1/incidents/${inc.id}/acknowledge`, {})).statusCode).toBe(404);
    expect((await call(stranger, 'GET', '/v1/incidents?tenant_id=acme')).statusCode).toBe(403);

    const ack = await call(oncall, 'POST', `/v1/incidents/${inc.id}/acknowledge`, { note: 'looking' });
    expect(ack.statusCode).toBe(200);
    expect(ack.json()).toMatchObject({ status: 'acknowledged', acknowledged: { actor: 'key:ann', note: 'looking' } });
    const again = await call(oncall, 'POST', `/v1/incidents/${inc.id}/acknowledge`, {});
    expect(again.statusCode).toBe(409);
    expect(again.json()).toMatchObject({ error: { code: 'FORGE_ERR_CONFLICT', field: 'incident_id' } });

    const noNote = await call(oncall, 'POST', `/v1/incidents/${inc.id}/resolve`, {});
    expect(noNote.statusCode).toBe(400);
    expect((noNote.json() as { error: { field: string } }).error.field).toContain('note');
    const done = await call(oncall, 'POST', `/v1/incidents/${inc.id}/resolve`, { note: 'runaway eval fixed; cap raised by finance' });
    expect(done.statusCode).toBe(200);
    expect(done.json()).toMatchObject({ status: 'resolved', resolved: { actor: 'key:ann', note: 'runaway eval fixed; cap raised by finance' } });
    expect((await call(oncall, 'GET', '/v1/incidents?status=open')).json()).toMatchObject({ incidents: expect.not.arrayContaining([expect.objectContaining({ id: inc.id })]) });

    // A restart reads the same record from the log; the stop is not announced again (no second incident).
    forge = await start();
    const after = ((await call(oncall, 'GET', '/v1/incidents')).json() as { incidents: IncidentJson[] }).incidents.filter((i) => i.scope === 'tenant:acme');
    expect(after).toHaveLength(1);
    expect(after[0]).toMatchObject({ id: inc.id, status: 'resolved', resolved: { note: 'runaway eval fixed; cap raised by finance' } });
    // The audit trail holds each step.
    const rows = await forge.store.guardrailEvents({ scope: { tenantId: 'acme' }, from: 0, to: Date.now() + 86_400_000, kinds: ['incident'], scopeKey: 'tenant:acme' });
    expect(rows.map((r) => (r.details as { action: string }).action).sort()).toEqual(['acknowledged', 'opened', 'resolved']);
  }, 60_000);
});

describe('projected breach', () => {
  it('the hourly rollup raises a projected breach before the band is crossed, audited once per day', async () => {
    // One embedded store per process: the incidents test's Forge closes first.
    for (const o of open.splice(0)) await o.close();
    const d2 = mkdtempSync(join(tmpdir(), 'forge-projection-'));
    const at = Date.UTC(2026, 2, 10, 6, 0, 0); // a quarter of the UTC day has passed
    writeFileSync(join(d2, 'bands.yaml'), 'global:\n  B_day_soft: 100000\n  B_day_hard: 100000\n  B_week_soft: 100000\n  B_week_hard: 100000\n  B_run_cap: 100000\n  B_unit_cap: 1000\ntenants:\n  acme:\n    B_day_soft: 800\n    B_day_hard: 1000\n    B_unit_cap: 1000\n');
    const f = await startForge({ env: { FORGE_DATA_DIR: join(d2, 'data'), FORGE_PORT: '0', FORGE_BUDGETS_FILE: join(d2, 'bands.yaml'), FORGE_LOG_LEVEL: 'silent' }, now: () => at });
    try {
      const runner = (await f.keys.create({ name: 'runner', roles: ['runner'], tenantId: 'acme' })).key;
      const post = (id: string, usd: string) => f.app.inject({ method: 'POST', url: '/v1/events', headers: { authorization: `Bearer ${runner}` }, payload: { event_id: id, tenant_id: 'acme', run_id: 'r1', task_id: id, task_type: 'eval', environment: 'cpu-standard', status: 'success', finalized_at: new Date(at - 60_000).toISOString(), rli_eval_usd: usd, task_hours: '0' } });
      expect((await post('p1', '200')).statusCode).toBe(200);
      await f.rollup();
      const none = await f.store.guardrailEvents({ scope: { tenantId: 'acme' }, from: 0, to: at + 86_400_000, kinds: ['anomaly'] });
      expect(none).toEqual([]); // $200 by 06:00 projects $800: under B_day_hard
      expect((await post('p2', '100')).statusCode).toBe(200);
      await f.rollup();
      await f.rollup();
      const rows = await f.store.guardrailEvents({ scope: { tenantId: 'acme' }, from: 0, to: at + 86_400_000, kinds: ['anomaly'] });
      // $300 by 06:00 projects $1200 >= $1000 while the day is under the $800 soft band: one row, however many rollups.
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ scope: 'tenant:acme', details: { anomaly: 'projected_breach', subject: 'day_hard:2026-03-10', threshold_micros: 1_000_000_000 } });
      expect((rows[0]!.details as { value_micros: number }).value_micros).toBeGreaterThanOrEqual(1_200_000_000);
      expect(f.guardrail.effectiveState('tenant:acme')).toBe('NORMAL');
    } finally {
      await f.close();
      rmSync(d2, { recursive: true, force: true });
    }
  }, 60_000);
});
