import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startForge, type RunningForge } from '../cli/forge-process.ts';
import { checkPagerDutyEvent, checkSlackMessage, HttpReceiver, pagerDutyOk } from './helpers/http-receiver.ts';

// The whole path: an event over HTTP breaches a band -> the guardrail changes state -> PagerDuty and Slack
// (loopback receivers that check each payload) -> an operator lifts over the API -> PagerDuty resolve.
let forge: RunningForge;
let slack: HttpReceiver;
let pd: HttpReceiver;
let key: string;
const logged: string[] = [];
const ROUTING_KEY = 'R0UT1NGKEYe2esecret0123456789abc';

beforeAll(async () => {
  slack = await HttpReceiver.start({ check: ({ json }) => checkSlackMessage(json) });
  pd = await HttpReceiver.start({ check: ({ json }) => checkPagerDutyEvent(json, ROUTING_KEY), ok: pagerDutyOk });
  const dir = mkdtempSync(join(tmpdir(), 'forge-alerts-e2e-'));
  writeFileSync(join(dir, 'bands.yaml'), 'global:\n  B_day_soft: 8000\n  B_day_hard: 10000\n  B_week_soft: 40000\n  B_week_hard: 50000\n  B_run_cap: 100000\n  B_unit_cap: 1000\ntenants:\n  acme:\n    B_day_soft: 80\n    B_day_hard: 100\n');
  writeFileSync(
    join(dir, 'alerts.yaml'),
    `source: forge-test\nlinks:\n  dashboardUrl: http://grafana.test/d/burn?scope={scope}\n  acknowledgeUrl: http://forge.test/v1/guardrail/{scope}/acknowledge\nrenotify:\n  intervalSeconds: 3600\ndelivery:\n  maxAttempts: 3\n  initialBackoffMs: 10\n  maxBackoffMs: 50\n  timeoutMs: 2000\nrateLimit:\n  burst: 50\n  perMinute: 600\n  maxWaitMs: 1000\ndestinations:\n  slack:\n    type: slack\n    webhookUrl: \${T_SLACK}\n  pd:\n    type: pagerduty\n    routingKey: \${T_PD_KEY}\n    url: \${T_PD_URL}\nroutes:\n  WARNING: [slack]\n  HARD_STOP: [pd, slack]\n  EMERGENCY_STOP: [pd, slack]\n  hung_task: [slack]\n  component_failure: [pd]\n`,
  );
  forge = await startForge({
    env: {
      FORGE_DATA_DIR: join(dir, 'data'), FORGE_PORT: '0', FORGE_BUDGETS_FILE: join(dir, 'bands.yaml'), FORGE_ALERTS_FILE: join(dir, 'alerts.yaml'), FORGE_LOG_LEVEL: 'silent',
      T_SLACK: `${slack.url}/services/T000/B000/secretpath`, T_PD_KEY: ROUTING_KEY, T_PD_URL: `${pd.url}/v2/enqueue`,
    },
    log: (l) => logged.push(l),
  });
  key = (await forge.keys.create({ name: 'oncall-ann', roles: ['runner', 'oncall'], tenantId: 'acme' })).key;
});
afterAll(async () => {
  await forge?.close();
  await slack?.close();
  await pd?.close();
});

const post = (url: string, payload: unknown) => forge.app.inject({ method: 'POST', url, headers: { authorization: `Bearer ${key}` }, payload: payload as Record<string, unknown> });
const event = (id: string, usd: string) => ({ event_id: id, tenant_id: 'acme', run_id: 'r1', task_id: id, task_type: 'eval', environment: 'cpu-standard', status: 'success', finalized_at: new Date().toISOString(), rli_eval_usd: usd, task_hours: '0' });

describe('alerts from the running app', () => {
  it('a breach pages PagerDuty and posts to Slack with value, threshold, 7-day burn and top component; a lift resolves', async () => {
    expect((await post('/v1/events', event('a1', '85'))).statusCode).toBe(200);
    await slack.waitForCount(1);
    const warn = slack.requests[0]!;
    expect(warn.problems).toEqual([]);
    expect(warn.body).toContain('tenant:acme');
    expect(pd.requests).toHaveLength(0); // a warning does not page

    expect((await post('/v1/events', event('a2', '20'))).statusCode).toBe(200);
    // The tenant and its run (which inherits the tenant's bands) each page once.
    await pd.waitForCount(2);
    const pages = pd.requests.map((r) => r.json as { dedup_key: string });
    expect(pages.map((p) => p.dedup_key).sort()).toEqual([expect.stringContaining('run:acme/r1/day_hard/'), expect.stringContaining('tenant:acme/day_hard/')]);
    const page = pd.requests.find((r) => (r.json as { dedup_key: string }).dedup_key.includes('tenant:acme'))!.json as { routing_key: string; event_action: string; dedup_key: string; payload: { severity: string; custom_details: Record<string, unknown> } };
    expect(pd.problems()).toEqual([]);
    expect(page).toMatchObject({ routing_key: ROUTING_KEY, event_action: 'trigger', payload: { severity: 'error' } });
    expect(page.dedup_key).toContain('tenant:acme');
    const details = JSON.stringify(page.payload.custom_details);
    expect(details).toContain('105'); // current value
    expect(details).toContain('100'); // threshold
    expect(details).toMatch(/rli/); // top component

    const lift = await post('/v1/guardrail/tenant:acme/lift', { reason: 'finance approved the overrun' });
    expect(lift.statusCode).toBe(200);
    await pd.waitForCount(3);
    expect(pd.requests[2]!.json).toMatchObject({ event_action: 'resolve', dedup_key: page.dedup_key });
    // The routing key and webhook path never reach the logs.
    expect(logged.join('\n')).not.toContain(ROUTING_KEY);
    expect(logged.join('\n')).not.toContain('secretpath');
    const rows = await forge.store.alerts({ scope: { tenantId: 'acme' }, from: 0, to: Date.now() + 1000 });
    expect(rows.length).toBeGreaterThanOrEqual(3);
    expect(JSON.stringify(rows)).not.toContain(ROUTING_KEY);
  });
});
