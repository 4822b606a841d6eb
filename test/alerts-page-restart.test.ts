import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startForge, type RunningForge } from '../cli/forge-process.ts';
import { checkPagerDutyEvent, checkSlackMessage, HttpReceiver, pagerDutyOk } from './helpers/http-receiver.ts';
import { waitFor } from './helpers/redis.ts';

// A stop pages on-call; Forge is redeployed while the stop holds; the lift after the restart resolves the
// same PagerDuty incident (the page of an earlier life is taken over from the audited state change, not
// left open for ever), and the restart itself pages nobody again. Embedded default: no Redis.
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
      'tenants:\n  acme:\n    B_day_soft: 8\n    B_day_hard: 10\n    B_week_soft: 4000\n    B_week_hard: 5000\n    B_run_cap: 10000\n    B_unit_cap: 100\n',
  );
  writeFileSync(
    join(dir, 'alerts.yaml'),
    `links:\n  dashboardUrl: http://grafana.test/d/burn?scope={scope}\n  acknowledgeUrl: http://forge.test/v1/guardrail/{scope}/acknowledge\ndelivery:\n  maxAttempts: 3\n  initialBackoffMs: 10\n  maxBackoffMs: 50\n  timeoutMs: 2000\ndestinations:\n  slack:\n    type: slack\n    webhookUrl: \${T_SLACK}\n  pd:\n    type: pagerduty\n    routingKey: \${T_PD_KEY}\n    url: \${T_PD_URL}\nroutes:\n  WARNING: [slack]\n  HARD_STOP: [pd, slack]\n  EMERGENCY_STOP: [pd, slack]\n`,
  );
});

afterAll(async () => {
  for (const f of open.splice(0)) await f.close();
  await slack?.close();
  await pd?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function start(): Promise<RunningForge> {
  for (const f of open.splice(0)) await f.close();
  const f = await startForge({
    env: {
      FORGE_DATA_DIR: join(dir, 'data'), FORGE_PORT: '0', FORGE_BUDGETS_FILE: join(dir, 'bands.yaml'), FORGE_ALERTS_FILE: join(dir, 'alerts.yaml'), FORGE_LOG_LEVEL: 'silent',
      T_SLACK: `${slack.url}/services/T000/B000/secretpath`, T_PD_KEY: ROUTING_KEY, T_PD_URL: `${pd.url}/v2/enqueue`,
    },
  });
  open.push(f);
  return f;
}

/** PagerDuty events of the tenant's scope (its run pages on its own). */
const pdEvents = () => pd.requests.map((r) => r.json as { event_action: string; dedup_key: string }).filter((e) => e.dedup_key.startsWith('forge/tenant:acme/'));

describe('a page opened before a restart', () => {
  it('is resolved by the lift after the restart, under the key it was opened with; the restart pages nobody', async () => {
    let forge = await start();
    const runner = (await forge.keys.create({ name: 'runner', roles: ['runner'], tenantId: 'acme' })).key;
    const oncall = (await forge.keys.create({ name: 'ann', roles: ['oncall'], tenantId: 'acme' })).key;
    const call = (key: string, method: 'GET' | 'POST', url: string, payload?: unknown) =>
      forge.app.inject({ method, url, headers: { authorization: `Bearer ${key}` }, ...(payload !== undefined ? { payload: payload as Record<string, unknown> } : {}) });

    // $10.50 in one day against B_day_hard $10 (under the 110% emergency): HARD_STOP (day_hard), paged for the
    // tenant and for its run (which takes the tenant's bands).
    const ev = { event_id: 'spend-1', tenant_id: 'acme', run_id: 'r1', task_id: 'spend-1', task_type: 'eval', environment: 'cpu-standard', status: 'success', finalized_at: new Date().toISOString(), rli_eval_usd: '10.5', task_hours: '0' };
    expect((await call(runner, 'POST', '/v1/events', ev)).statusCode).toBe(200);
    await waitFor('the stop is paged', () => Promise.resolve(pdEvents().some((e) => e.event_action === 'trigger')));
    const triggers = pdEvents().filter((e) => e.event_action === 'trigger');
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
    await waitFor('the page is resolved', () => Promise.resolve(pdEvents().some((e) => e.event_action === 'resolve')));
    const resolves = pdEvents().filter((e) => e.event_action === 'resolve');
    expect(resolves.map((e) => e.dedup_key)).toEqual([key]);
    // The restart paged nobody again: one trigger in all.
    expect(pdEvents().filter((e) => e.event_action === 'trigger')).toHaveLength(1);
    expect(pd.requests.every((r) => r.problems.length === 0)).toBe(true);
  });
});
