import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bandsYaml, startForgeProcess, type ForgeProcess } from './helpers/forge-process.ts';
import { freshPrefix, startRedis, waitFor, type RedisServer } from './helpers/redis.ts';

// Two `forge start` processes on one real Redis: one control state. A budget change, an acknowledgement
// and a lift taken on one are in force on the other within a second; the spend that drives the stop
// conditions is the shared one, so the band is crossed when the two processes' events together cross it,
// and the stop is announced once, not once per process.

const BANDS = bandsYaml({
  acme: { B_day_soft: 80, B_day_hard: 100, B_unit_cap: 50 },
  beta: { B_day_soft: 10, B_day_hard: 1000, B_unit_cap: 50 },
});

let redis: RedisServer;
let a: ForgeProcess;
let b: ForgeProcess;

beforeAll(async () => {
  redis = await startRedis();
  const env = { FORGE_REDIS_URL: redis.url, FORGE_REDIS_PREFIX: freshPrefix('guard2'), FORGE_ROLLUP_INTERVAL_MS: '3600000', FORGE_LEDGER_TIMEOUT_MS: '10000' };
  [a, b] = await Promise.all([startForgeProcess(env, BANDS), startForgeProcess(env, BANDS)]);
}, 60_000);

afterAll(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  await redis?.stop();
});

async function ingest(p: ForgeProcess, evs: unknown[]): Promise<void> {
  const r = await call(p, 'POST', '/v1/events', { events: evs });
  expect(r.status, JSON.stringify(r.json)).toBe(200);
}

async function call(p: ForgeProcess, method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const r = await fetch(`${p.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${p.key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: r.status, json: (await r.json()) as Record<string, unknown> };
}

function events(tenant: string, prefix: string, n: number, usd: string) {
  return Array.from({ length: n }, (_, i) => ({
    event_id: `${prefix}-${i}`,
    tenant_id: tenant,
    run_id: `${prefix}-run`,
    task_id: `${prefix}-${i}`,
    task_type: 'eval',
    environment: 'cpu-standard',
    status: 'success',
    finalized_at: new Date().toISOString(),
    rli_eval_usd: usd,
    task_hours: '0',
  }));
}

/** Polls until the check passes; returns how long it took, ms. */
async function within(ms: number, check: () => Promise<boolean>): Promise<number> {
  const t0 = Date.now();
  await waitFor('the other process to follow', check, ms);
  return Date.now() - t0;
}

const state = async (p: ForgeProcess, scope: string) => (await call(p, 'GET', `/v1/guardrail/${encodeURIComponent(scope)}`)).json;

describe('two API processes, one control state', () => {
  it('the stop conditions read the shared spend: 60 + 45 USD over two processes cross the 100 USD band, announced once', async () => {
    await ingest(a, events('acme', 'pa', 12, '5')); // 60 USD on A
    expect((await state(a, 'tenant:acme')).state).toBe('NORMAL');
    await ingest(b, events('acme', 'pb', 9, '5')); // 45 USD on B
    // B saw 60 + 45 = 105 >= 100: HARD_STOP; A adopts it from the bus.
    expect(await state(b, 'tenant:acme')).toMatchObject({ state: 'HARD_STOP', spend: expect.objectContaining({ day_usd: '105' }) });
    await within(1000, async () => (await state(a, 'tenant:acme')).state === 'HARD_STOP');
    expect((await state(a, 'tenant:acme')).spend).toMatchObject({ day_usd: '105' });
    // Announced (and audited) once over both processes.
    const stops = async (p: ForgeProcess) =>
      ((await call(p, 'GET', '/v1/audit/guardrail-events?scope=tenant:acme')).json.events as Array<{ kind: string; state: string }>).filter((e) => e.kind === 'state_change' && e.state === 'HARD_STOP').length;
    // The audit row is written after the publish: wait for it, then make sure no second one follows.
    await within(5000, async () => (await stops(a)) + (await stops(b)) >= 1);
    await new Promise((r) => setTimeout(r, 300));
    expect((await stops(a)) + (await stops(b))).toBe(1);
    // The same events replayed through the other process count nothing.
    await ingest(a, events('acme', 'pb', 9, '5'));
    expect((await state(a, 'tenant:acme')).spend).toMatchObject({ day_usd: '105' });
  });

  it('a lift on one process is in force on the other within a second, and the waived band does not stop it again', async () => {
    const lift = await call(b, 'POST', '/v1/guardrail/tenant:acme/lift', { reason: 'approved by finance' });
    expect(lift.status, JSON.stringify(lift.json)).toBe(200);
    // Down to WARNING: the lift waives the stop; the soft band (a warning) still holds at 105 USD.
    expect(lift.json.state).toBe('WARNING');
    await within(1000, async () => (await state(a, 'tenant:acme')).state === 'WARNING');
    expect((await state(a, 'tenant:acme')).waived).toContain('day_hard');
    // More spend (under the 110 USD emergency level) through A: the lifted day_hard holds, nothing new.
    await ingest(a, events('acme', 'pc', 1, '2'));
    expect((await state(a, 'tenant:acme')).state).toBe('WARNING');
    const adm = await call(a, 'POST', '/v1/admissions', { tenant_id: 'acme', run_id: 'after-lift', task_type: 'eval', estimated_cost_usd: '1' });
    expect(adm.json.decision).toBe('allow');
  });

  it('an acknowledgement on one process is in force on the other within a second', async () => {
    await ingest(a, events('beta', 'wa', 3, '5')); // 15 >= 10 soft
    expect((await state(a, 'tenant:beta')).state).toBe('WARNING');
    await within(1000, async () => (await state(b, 'tenant:beta')).state === 'WARNING');
    const ack = await call(b, 'POST', '/v1/guardrail/tenant:beta/acknowledge', { reason: 'on it' });
    expect(ack.status, JSON.stringify(ack.json)).toBe(200);
    await within(1000, async () => (await state(a, 'tenant:beta')).acknowledged === true);
  });

  it('a budget change on one process is in force on the other within a second', async () => {
    const put = await call(a, 'PUT', '/v1/budgets/tenant:beta', { reason: 'beta grows', B_day_hard: '2000' });
    expect(put.status, JSON.stringify(put.json)).toBe(200);
    expect(put.json.version).toBe(2);
    await within(1000, async () => (await call(b, 'GET', '/v1/budgets/tenant:beta')).json.version === 2);
    expect((await call(b, 'GET', '/v1/budgets/tenant:beta')).json).toMatchObject({ version: 2, bands: expect.objectContaining({ B_day_hard: '2000' }) });
    const limit = ((await state(b, 'tenant:beta')).bands as { day_hard: { limit_usd: string } }).day_hard.limit_usd;
    expect(limit).toBe('2000');
  });
});
