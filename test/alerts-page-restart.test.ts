import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyPluginAsync } from 'fastify';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startForge, type RunningForge } from '../cli/forge-process.ts';
import { checkPagerDutyEvent, checkSlackMessage, HttpReceiver, pagerDutyOk } from './helpers/http-receiver.ts';
import { waitFor } from './helpers/redis.ts';

// A stop pages on-call; Forge is redeployed while the stop holds; the lift after the restart resolves the
// same PagerDuty incident (the page of an earlier life is taken over from the audited state change, not
// left open for ever), and the restart itself pages nobody again. So do the pages that are not a stop's:
// an execution spike's intake pause, a hung task, a failing component (taken over from the alert log); their
// resolution in the next life (the resume, the task's end, the restart itself for a component of the gone
// process) resolves the same incident, and nothing is triggered again. Embedded default: no Redis.
const ROUTING_KEY = 'R0UT1NGKEYpagerestart0123456789a';
const dir = mkdtempSync(join(tmpdir(), 'forge-page-restart-'));
const open: RunningForge[] = [];
let slack: HttpReceiver;
let pd: HttpReceiver;

beforeAll(async () => {
  slack = await HttpReceiver.start({ check: ({ json }) => checkSlackMessage(json) });
  pd = await HttpReceiver.start({ check: ({ json }) => checkPagerDutyEvent(json, ROUTING_KEY), ok: pagerDutyOk });
  writeFileSync(
    join(dir, 'bands.yaml'),
    'global:\n  B_day_soft: 100000\n  B_day_hard: 100000\n  B_week_soft: 100000\n  B_week_hard: 100000\n  B_run_cap: 100000\n  B_unit_cap: 1000\n' +
      'tenants:\n  acme:\n    B_day_soft: 8\n    B_day_hard: 10\n    B_week_soft: 4000\n    B_week_hard: 5000\n    B_run_cap: 10000\n    B_unit_cap: 100\n  ops:\n    B_unit_cap: 100\n  spiky:\n    B_unit_cap: 100\n',
  );
  writeFileSync(
    join(dir, 'alerts.yaml'),
    `links:\n  dashboardUrl: http://grafana.test/d/burn?scope={scope}\n  acknowledgeUrl: http://forge.test/v1/guardrail/{scope}/acknowledge\ndelivery:\n  maxAttempts: 3\n  initialBackoffMs: 10\n  maxBackoffMs: 50\n  timeoutMs: 2000\ndestinations:\n  slack:\n    type: slack\n    webhookUrl: \${T_SLACK}\n  pd:\n    type: pagerduty\n    routingKey: \${T_PD_KEY}\n    url: \${T_PD_URL}\nroutes:\n  WARNING: [slack]\n  HARD_STOP: [pd, slack]\n  EMERGENCY_STOP: [pd, slack]\n  intake_paused: [pd, slack]\n  hung_task: [pd, slack]\n  component_failure: [pd]\n`,
  );
});

afterEach(async () => {
  for (const f of open.splice(0)) await f.close();
});

afterAll(async () => {
  await slack?.close();
  await pd?.close();
  rmSync(dir, { recursive: true, force: true });
});

/**
 * The next life of Forge on the data directory `data` (each test its own), the last one closed first;
 * `alerting: false` starts one without an alerts file (it pages nobody and resolves nothing).
 */
async function start(data = 'data', opts: { now?: () => number; plugins?: FastifyPluginAsync[]; alerting?: boolean } = {}): Promise<RunningForge> {
  for (const f of open.splice(0)) await f.close();
  const { alerting = true, ...rest } = opts;
  const f = await startForge({
    env: {
      FORGE_DATA_DIR: join(dir, data), FORGE_PORT: '0', FORGE_BUDGETS_FILE: join(dir, 'bands.yaml'), FORGE_LOG_LEVEL: 'silent',
      ...(alerting ? { FORGE_ALERTS_FILE: join(dir, 'alerts.yaml') } : {}),
      FORGE_SPIKE_FACTOR: '5', FORGE_SPIKE_MIN_COUNT: '20', FORGE_SPIKE_MIN_TRAILING: '10', FORGE_SPIKE_MIN_HISTORY_MS: '1800000',
      T_SLACK: `${slack.url}/services/T000/B000/secretpath`, T_PD_KEY: ROUTING_KEY, T_PD_URL: `${pd.url}/v2/enqueue`,
    },
    log: () => undefined,
    ...rest,
  });
  open.push(f);
  return f;
}

type PdEvent = { event_action: string; dedup_key: string };
/** PagerDuty events whose dedup key holds `keyPart` (a scope's, a condition's). */
const pdEvents = (keyPart: string): PdEvent[] => pd.requests.map((r) => r.json as PdEvent).filter((e) => e.dedup_key.includes(keyPart));
/** The dedup keys of those events with `action` (trigger, resolve), in the order received. */
const actions = (keyPart: string, action: string): string[] => pdEvents(keyPart).filter((e) => e.event_action === action).map((e) => e.dedup_key);

/** The page opened under `key` is resolved, once, under that key; and it was triggered once in all. */
async function resolvedOnce(keyPart: string, key: string | undefined): Promise<void> {
  expect(key).toBeDefined();
  await waitFor('the page is resolved', () => Promise.resolve(actions(keyPart, 'resolve').length > 0), 30_000);
  expect(actions(keyPart, 'resolve')).toEqual([key]);
  expect(actions(keyPart, 'trigger')).toEqual([key]);
  expect(pd.problems()).toEqual([]);
}

/** Calls the current life's app with an API key. */
function caller(forge: () => RunningForge) {
  return (key: string, method: 'GET' | 'POST', url: string, payload?: unknown) =>
    forge().app.inject({ method, url, headers: { authorization: `Bearer ${key}` }, ...(payload !== undefined ? { payload: payload as Record<string, unknown> } : {}) });
}

describe('a page opened before a restart', () => {
  it('is resolved by the lift after the restart, under the key it was opened with; the restart pages nobody', async () => {
    let forge = await start();
    const runner = (await forge.keys.create({ name: 'runner', roles: ['runner'], tenantId: 'acme' })).key;
    const oncall = (await forge.keys.create({ name: 'ann', roles: ['oncall'], tenantId: 'acme' })).key;
    const call = caller(() => forge);

    // $10.50 in one day against B_day_hard $10 (under the 110% emergency): HARD_STOP (day_hard), paged for the
    // tenant and for its run (which takes the tenant's bands).
    const ev = { event_id: 'spend-1', tenant_id: 'acme', run_id: 'r1', task_id: 'spend-1', task_type: 'eval', environment: 'cpu-standard', status: 'success', finalized_at: new Date().toISOString(), rli_eval_usd: '10.5', task_hours: '0' };
    expect((await call(runner, 'POST', '/v1/events', ev)).statusCode).toBe(200);
    await waitFor('the stop is paged', () => Promise.resolve(pdEvents('forge/tenant:acme/').some((e) => e.event_action === 'trigger')));
    const triggers = pdEvents('forge/tenant:acme/').filter((e) => e.event_action === 'trigger');
    expect(triggers).toHaveLength(1);
    const key = triggers[0]!.dedup_key;
    expect(key).toMatch(/^forge\/tenant:acme\/day_hard\//);
    expect((await call(runner, 'GET', '/v1/guardrail/tenant:acme')).json()).toMatchObject({ state: 'HARD_STOP' });

    // Redeploy while the stop holds.
    forge = await start();
    expect((await call(runner, 'GET', '/v1/guardrail/tenant:acme')).json()).toMatchObject({ state: 'HARD_STOP' });
    // On-call lifts it in the new process: the incident of the earlier life is resolved, by its key.
    const lift = await call(oncall, 'POST', '/v1/guardrail/tenant:acme/lift', { reason: 'budget raised by finance' });
    expect(lift.statusCode, lift.body).toBe(200);
    await waitFor('the page is resolved', () => Promise.resolve(pdEvents('forge/tenant:acme/').some((e) => e.event_action === 'resolve')));
    const resolves = pdEvents('forge/tenant:acme/').filter((e) => e.event_action === 'resolve');
    expect(resolves.map((e) => e.dedup_key)).toEqual([key]);
    // The restart paged nobody again: one trigger in all.
    expect(pdEvents('forge/tenant:acme/').filter((e) => e.event_action === 'trigger')).toHaveLength(1);
    expect(pd.requests.every((r) => r.problems.length === 0)).toBe(true);
  });
});

// Waits are long (30 s): a real process on the embedded store, on a machine that may be busy.
describe('an operational page opened before a restart', () => {
  /**
   * A tenant's first life: an hour of one admission a minute (the trailing rate), then a burst whose 21st
   * admission is the spike; the pause is paged. The process clock runs two hours back, so all of it ends
   * before the real now. Returns the page's dedup key and the keys.
   */
  async function pausedBySpike(tenant: string, next: () => Promise<RunningForge>, clock: { now: number }) {
    const forge = await next();
    const call = caller(() => forge);
    const runner = (await forge.keys.create({ name: 'runner', roles: ['runner'], tenantId: tenant })).key;
    const oncall = (await forge.keys.create({ name: 'ann', roles: ['oncall'], tenantId: tenant })).key;
    const t0 = clock.now;
    for (let m = 0; m < 60; m++) {
      clock.now = t0 + m * 60_000 + 1000;
      expect((await admission(call, runner, tenant)).statusCode).toBe(200);
    }
    clock.now = t0 + 60 * 60_000 + 1000;
    for (let i = 0; i < 21; i++) await admission(call, runner, tenant);
    expect((await admission(call, runner, tenant)).statusCode).toBe(429);
    await waitFor('the pause is paged', () => Promise.resolve(actions(`tenant:${tenant}/anomaly:execution_spike:`, 'trigger').length > 0), 30_000);
    await forge.intake.drain();
    return { key: actions(`tenant:${tenant}/anomaly:execution_spike:`, 'trigger')[0]!, runner, oncall };
  }
  const admission = (call: ReturnType<typeof caller>, runner: string, tenant: string) =>
    call(runner, 'POST', '/v1/admissions', { tenant_id: tenant, run_id: `r-${tenant}`, task_type: 'eval', estimated_cost_usd: '0.01' });
  const twoHoursBack = () => ({ now: Math.floor((Date.now() - 2 * 3_600_000) / 60_000) * 60_000 });

  it("an execution spike's intake pause: the resume after the restart resolves its page", async () => {
    const clock = twoHoursBack();
    const next = () => start('intake', { now: () => clock.now });
    const { key, runner, oncall } = await pausedBySpike('ops', next, clock);

    // Redeployed while paused: still paused, nothing paged again; on-call resumes in the new life.
    const forge = await next();
    const call = caller(() => forge);
    expect((await admission(call, runner, 'ops')).statusCode).toBe(429);
    const resumed = await call(oncall, 'POST', '/v1/tenants/ops/intake/resume', { reason: 'the burst was a planned backfill' });
    expect(resumed.statusCode, resumed.body).toBe(200);
    await resolvedOnce('tenant:ops/anomaly:execution_spike:', key);
  }, 60_000);

  it('a pause resumed while no process held its page (a Forge without alerting took the resume): the next start resolves it', async () => {
    const clock = twoHoursBack();
    const { key, oncall } = await pausedBySpike('spiky', () => start('intake-unheld', { now: () => clock.now }), clock);
    const quiet = await start('intake-unheld', { now: () => clock.now, alerting: false });
    expect((await caller(() => quiet)(oncall, 'POST', '/v1/tenants/spiky/intake/resume', { reason: 'resumed by the night shift' })).statusCode).toBe(200);
    await quiet.intake.drain();
    expect(actions('tenant:spiky/anomaly:execution_spike:', 'resolve')).toEqual([]);

    // The next life with alerting: the page it takes over is of a condition that no longer holds.
    await start('intake-unheld', { now: () => clock.now });
    await resolvedOnce('tenant:spiky/anomaly:execution_spike:', key);
  }, 90_000);

  it("a hung task: reported again after the restart sends nothing; the task's final event resolves its page", async () => {
    const next = () => start('hung');
    let forge = await next();
    const call = caller(() => forge);
    const runner = (await forge.keys.create({ name: 'runner', roles: ['runner'], tenantId: 'ops' })).key;
    const hung = { tenant_id: 'ops', run_id: 'r-hang', task_id: 'hangs-1', silent_for_ms: 90_000 };
    const reported = await call(runner, 'POST', '/v1/alerts/hung-tasks', hung);
    expect(reported.json()).toMatchObject({ outcome: 'dispatched', delivered: 2 });
    const [key] = actions('run:ops/r-hang/hung_task:hangs-1/', 'trigger');
    expect(key).toBeDefined();
    const slackBefore = slack.requests.length;

    forge = await next();
    // The runner's retry of the report (or a second runner's) after the redeploy: the page is already open.
    expect((await call(runner, 'POST', '/v1/alerts/hung-tasks', hung)).json()).toMatchObject({ outcome: 'dispatched', delivered: 0 });
    // The killed task's final cost event: the task ended, its page is resolved.
    const ev = { event_id: 'hangs-1-final', tenant_id: 'ops', run_id: 'r-hang', task_id: 'hangs-1', task_type: 'eval', environment: 'cpu-standard', status: 'failed', finalized_at: new Date().toISOString(), rli_eval_usd: '0.5', task_hours: '0' };
    expect((await call(runner, 'POST', '/v1/events', ev)).statusCode).toBe(200);
    await resolvedOnce('run:ops/r-hang/hung_task:hangs-1/', key);
    expect(slack.requests.length).toBe(slackBefore);
  }, 60_000);

  it("a failing component: the restart resolves the gone process's page once the new one serves", async () => {
    // A route that fails unexpectedly (500): the API pages on-call as a failing component.
    const failing: FastifyPluginAsync = async (app) => {
      app.get('/v1/test/failing', { config: { roles: ['oncall'] } }, () => Promise.reject(new Error('disk on fire')));
    };
    const next = () => start('component', { plugins: [failing] });
    let forge = await next();
    const call = caller(() => forge);
    const oncall = (await forge.keys.create({ name: 'ann', roles: ['oncall'], tenantId: null })).key;
    expect((await call(oncall, 'GET', '/v1/test/failing')).statusCode).toBe(500);
    await waitFor('the failure is paged', () => Promise.resolve(actions('global/component_failure:api/', 'trigger').length > 0), 30_000);
    const [key] = actions('global/component_failure:api/', 'trigger');

    forge = await next();
    await resolvedOnce('global/component_failure:api/', key);
    // A failure of the new life pages again, under the same key (a new incident, PagerDuty side).
    expect((await call(oncall, 'GET', '/v1/test/failing')).statusCode).toBe(500);
    await waitFor('the new failure is paged', () => Promise.resolve(actions('global/component_failure:api/', 'trigger').length > 1), 30_000);
    expect(actions('global/component_failure:api/', 'trigger')).toEqual([key, key]);
    expect(pd.problems()).toEqual([]);
  }, 60_000);
});
