import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startForge, type RunningForge } from '../cli/forge-process.ts';
import { ExecutionRate } from '../guard/index.ts';
import { HttpAdmissionClient } from '../runner/index.ts';
import { bandsYaml, startForgeProcess, type ForgeProcess } from './helpers/forge-process.ts';
import { checkPagerDutyEvent, checkSlackMessage, HttpReceiver, pagerDutyOk } from './helpers/http-receiver.ts';
import { freshPrefix, startRedis, waitFor, type RedisServer } from './helpers/redis.ts';

// An execution spike pauses a tenant's intake, end to end over HTTP on the real server wiring: a steady hour
// of admissions, then a burst; the tenant's admissions are refused (429 FORGE_ERR_INTAKE_PAUSED) while
// another tenant's go on; on-call is paged (PagerDuty + Slack on loopback); the pause holds in a second API
// process (same Redis), across a restart (rebuilt from guardrail_events alone, on an empty Redis namespace),
// and until an operator resumes it (a runner may not).
const ROUTING_KEY = 'R0UT1NGKEYintakespike0123456789a';
const BANDS = bandsYaml({ acme: { B_unit_cap: 100 }, beta: { B_unit_cap: 100 } });
const SPIKE_ENV = { FORGE_SPIKE_FACTOR: '5', FORGE_SPIKE_MIN_COUNT: '20', FORGE_SPIKE_MIN_TRAILING: '10', FORGE_SPIKE_MIN_HISTORY_MS: '1800000' };

let redis: RedisServer;
let slack: HttpReceiver;
let pd: HttpReceiver;
let dir: string;
let prefix: string;
let forge: RunningForge | undefined;
let other: ForgeProcess | undefined;
const logs: string[] = [];
// The API's clock: two hours back, so the steady hour and the burst end before the real now (the second
// process runs on the real clock).
const clock = { now: Math.floor((Date.now() - 2 * 3_600_000) / 60_000) * 60_000 };

function env(redisPrefix: string): NodeJS.ProcessEnv {
  return {
    FORGE_DATA_DIR: join(dir, 'data'), FORGE_PORT: '0', FORGE_HOST: '127.0.0.1', FORGE_BUDGETS_FILE: join(dir, 'bands.yaml'), FORGE_ALERTS_FILE: join(dir, 'alerts.yaml'), FORGE_LOG_LEVEL: 'silent',
    FORGE_REDIS_URL: redis.url, FORGE_REDIS_PREFIX: redisPrefix, FORGE_ROLLUP_INTERVAL_MS: '3600000', FORGE_LEDGER_TIMEOUT_MS: '10000', FORGE_RESERVATION_TTL_MS: '86400000',
    T_SLACK: `${slack.url}/services/T000/B000/secretpath`, T_PD_KEY: ROUTING_KEY, T_PD_URL: `${pd.url}/v2/enqueue`,
    ...SPIKE_ENV,
  };
}

const start = (redisPrefix: string): Promise<RunningForge> => startForge({ env: env(redisPrefix), now: () => clock.now, log: (l) => logs.push(l) });

beforeAll(async () => {
  redis = await startRedis();
  slack = await HttpReceiver.start({ check: ({ json }) => checkSlackMessage(json) });
  pd = await HttpReceiver.start({ check: ({ json }) => checkPagerDutyEvent(json, ROUTING_KEY), ok: pagerDutyOk });
  dir = mkdtempSync(join(tmpdir(), 'forge-intake-'));
  writeFileSync(join(dir, 'bands.yaml'), BANDS);
  writeFileSync(
    join(dir, 'alerts.yaml'),
    `links:\n  dashboardUrl: http://grafana.test/d/burn?scope={scope}\n  acknowledgeUrl: http://forge.test/v1/guardrail/{scope}/acknowledge\ndelivery:\n  maxAttempts: 3\n  initialBackoffMs: 10\n  maxBackoffMs: 50\n  timeoutMs: 2000\ndestinations:\n  slack:\n    type: slack\n    webhookUrl: \${T_SLACK}\n  pd:\n    type: pagerduty\n    routingKey: \${T_PD_KEY}\n    url: \${T_PD_URL}\nroutes:\n  intake_paused: [pd, slack]\n`,
  );
  prefix = freshPrefix('intake');
  forge = await start(prefix);
}, 60_000);

afterAll(async () => {
  await forge?.close();
  await other?.stop();
  await slack?.close();
  await pd?.close();
  await redis?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function call(url: string, key: string, method: string, path: string, body?: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const r = await fetch(`${url}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: r.status, json: (await r.json()) as Record<string, unknown> };
}

const admission = (tenant: string) => ({ tenant_id: tenant, run_id: `r-${tenant}`, task_type: 'eval', estimated_cost_usd: '0.01' });

describe('execution spike: intake paused, paged, held across processes and restarts, resumed by an operator', () => {
  let runner: string;
  let oncall: string;

  it('a steady hour, then a burst: the tenant is paused (429 FORGE_ERR_INTAKE_PAUSED) and another tenant is not', async () => {
    const f = forge!;
    runner = (await f.keys.create({ name: 'runner', roles: ['runner'], tenantId: null })).key;
    oncall = (await f.keys.create({ name: 'oncall-ann', roles: ['oncall'], tenantId: null })).key;
    const t0 = clock.now;
    // One admission a minute for an hour, for both tenants: the trailing rate.
    for (let m = 0; m < 60; m++) {
      clock.now = t0 + m * 60_000 + 1000;
      for (const tenant of ['acme', 'beta']) {
        const r = await call(f.url, runner, 'POST', '/v1/admissions', admission(tenant));
        expect(r.status, JSON.stringify(r.json)).toBe(200);
        expect(r.json.decision).toBe('allow');
      }
    }
    // Minute 60: acme bursts. The window (minutes 56-60) holds 4 of the steady ones; the trailing 56 minutes
    // held 56, 5 a window, so 5 x that is 25: the 21st admission of the burst is the spike, the 22nd is refused.
    clock.now = t0 + 60 * 60_000 + 1000;
    const answers: number[] = [];
    let refused: Record<string, unknown> | undefined;
    let inFlight: unknown;
    for (let i = 0; i < 40; i++) {
      const r = await call(f.url, runner, 'POST', '/v1/admissions', admission('acme'));
      answers.push(r.status);
      if (r.status !== 200) refused ??= r.json;
      else inFlight = r.json.reservation_id;
    }
    expect(answers.slice(0, 21).every((s) => s === 200)).toBe(true);
    expect(answers.slice(21).every((s) => s === 429)).toBe(true);
    expect(refused).toMatchObject({ error: { code: 'FORGE_ERR_INTAKE_PAUSED', field: 'tenant_id' } });
    expect(String((refused!.error as { message: string }).message)).toContain('"acme"');
    // A runner takes it as a refusal (the task waits), not as a failure of the API.
    const client = new HttpAdmissionClient({ baseUrl: f.url, apiKey: runner });
    const d = await client.admit({ tenantId: 'acme', runId: 'r-acme', taskType: 'eval', estimatedCostUsd: '0.01' });
    expect(d).toMatchObject({ decision: 'deny', state: 'HARD_STOP', scope: 'tenant:acme', retryAfterMs: null });
    expect(d.decision === 'deny' ? d.reason : '').toContain('paused');
    // Admissions that do not come over HTTP (an eval run started in this process, an in-process runner) are
    // refused as well: the guardrail itself asks the intake.
    const direct = await f.guardrail.admit({ tenantId: 'acme', runId: 'r-acme', taskType: 'eval', estimatedMicros: 10_000 });
    expect(direct).toMatchObject({ decision: 'deny', state: 'HARD_STOP', scope: 'tenant:acme', retryAfterMs: null, intakePaused: { reason: expect.any(String) } });
    // Another tenant is not touched.
    const beta = await call(f.url, runner, 'POST', '/v1/admissions', admission('beta'));
    expect(beta.json.decision).toBe('allow');
    const state = await call(f.url, runner, 'GET', '/v1/tenants/acme/intake');
    expect(state.json).toMatchObject({ tenant_id: 'acme', paused: true, actor: 'forge' });
    expect(String(state.json.reason)).toContain('execution spike');
    expect((await call(f.url, runner, 'GET', '/v1/tenants/beta/intake')).json).toMatchObject({ paused: false, seq: 0 });
    // Tasks in flight go on: a reservation taken before the pause settles.
    const settled = await call(f.url, runner, 'POST', `/v1/admissions/${String(inFlight)}/settle`, { actual_cost_usd: '0.01', event_id: 'intake-in-flight-1' });
    expect(settled.json).toMatchObject({ status: 'settled' });

    // Audited: one intake_pause row with the spike's figures.
    await f.intake.drain();
    const rows = await f.store.guardrailEvents({ scope: { tenantId: 'acme' }, from: 0, to: clock.now + 86_400_000, kinds: ['intake_pause'] });
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ scope: 'tenant:acme', actor: 'forge', seq: 1 });
    expect(rows[0]!.details).toMatchObject({ intake: 'paused', spike: { window_count: 25, trailing_count: 56, expected: 5, factor: 5 } });
    const anomalies = await f.store.guardrailEvents({ scope: { tenantId: 'acme' }, from: 0, to: clock.now + 86_400_000, kinds: ['anomaly'] });
    expect(anomalies.map((r) => r.details)).toEqual([expect.objectContaining({ anomaly: 'execution_spike', value: 25, threshold: 25, intake_seq: 1 })]);
  }, 60_000);

  it('on-call is paged (PagerDuty trigger) and told on Slack', async () => {
    await pd.waitForCount(1);
    await slack.waitForCount(1);
    expect(pd.problems()).toEqual([]);
    expect(slack.problems()).toEqual([]);
    const page = pd.requests[0]!.json as { event_action: string; dedup_key: string; payload: { summary: string; custom_details: Record<string, unknown> } };
    expect(page.event_action).toBe('trigger');
    expect(page.dedup_key).toContain('tenant:acme/anomaly:execution_spike:');
    expect(page.payload.summary).toContain('intake paused');
    expect(page.payload.custom_details).toMatchObject({ anomaly: 'execution_spike', tenant_id: 'acme', value: 25 });
    expect(JSON.stringify(slack.requests[0]!.json)).toContain('tenant:acme');
  });

  it('the pause holds in a second API process on the same Redis', async () => {
    other = await startForgeProcess({ FORGE_REDIS_URL: redis.url, FORGE_REDIS_PREFIX: prefix, FORGE_ROLLUP_INTERVAL_MS: '3600000', FORGE_LEDGER_TIMEOUT_MS: '10000', ...SPIKE_ENV }, BANDS);
    const r = await call(other.url, other.key, 'POST', '/v1/admissions', admission('acme'));
    expect(r.status).toBe(429);
    expect(r.json).toMatchObject({ error: { code: 'FORGE_ERR_INTAKE_PAUSED', field: 'tenant_id' } });
    expect((await call(other.url, other.key, 'POST', '/v1/admissions', admission('beta'))).json.decision).toBe('allow');
  }, 60_000);

  it('the pause holds across a restart, rebuilt from guardrail_events alone (an empty Redis namespace)', async () => {
    await forge!.close();
    forge = await start(freshPrefix('intake-empty'));
    const r = await call(forge.url, runner, 'POST', '/v1/admissions', admission('acme'));
    expect(r.status).toBe(429);
    expect(r.json).toMatchObject({ error: { code: 'FORGE_ERR_INTAKE_PAUSED' } });
    await forge.close();
    forge = await start(prefix);
    expect((await call(forge.url, runner, 'POST', '/v1/admissions', admission('acme'))).status).toBe(429);
  }, 60_000);

  it('a runner cannot resume; an operator resumes in one process and both admit again; the resume is audited with the actor', async () => {
    const f = forge!;
    const denied = await call(f.url, runner, 'POST', '/v1/tenants/acme/intake/resume', { reason: 'runner tries' });
    expect(denied.status).toBe(403);
    expect(denied.json).toMatchObject({ error: { code: 'FORGE_ERR_FORBIDDEN_ROLE' } });
    const noReason = await call(f.url, oncall, 'POST', '/v1/tenants/acme/intake/resume', {});
    expect(noReason.status).toBe(400);
    expect(noReason.json).toMatchObject({ error: { code: 'FORGE_ERR_VALIDATION', field: 'reason' } });
    const notPaused = await call(f.url, oncall, 'POST', '/v1/tenants/beta/intake/resume', { reason: 'nothing to do' });
    expect(notPaused.status).toBe(409);

    // Resumed through this process; the second one learns it from the bus.
    const ok = await call(f.url, oncall, 'POST', '/v1/tenants/acme/intake/resume', { reason: 'burst was a planned backfill' });
    expect(ok.status, JSON.stringify(ok.json)).toBe(200);
    expect(ok.json).toMatchObject({ tenant_id: 'acme', paused: false, seq: 2 });
    expect((await call(f.url, runner, 'POST', '/v1/admissions', admission('acme'))).json.decision).toBe('allow');
    await waitFor('resume reaches the second process', async () => (await call(other!.url, other!.key, 'POST', '/v1/admissions', admission('acme'))).status === 200);
    const rows = await f.store.guardrailEvents({ scope: { tenantId: 'acme' }, from: 0, to: Date.now() + 86_400_000, kinds: ['intake_pause', 'intake_resume'] });
    expect(rows.map((r) => [r.kind, r.seq])).toEqual([
      ['intake_pause', 1],
      ['intake_resume', 2],
    ]);
    expect(rows[1]!.reason).toBe('burst was a planned backfill');
    expect(rows[1]!.actor).toMatch(/^oncall-ann \(/);
  }, 60_000);
});

describe('ExecutionRate', () => {
  it('a quiet tenant\'s first burst is not a spike; the same burst after a steady hour is', () => {
    const r = new ExecutionRate({ factor: 5, minCount: 20, minTrailing: 10 });
    const t0 = Date.UTC(2026, 0, 1);
    for (let i = 0; i < 100; i++) expect(r.note('new', t0 + i)).toBeUndefined();
    for (let m = 0; m < 60; m++) r.note('old', t0 + m * 60_000);
    let spike;
    for (let i = 0; i < 40 && !spike; i++) spike = r.note('old', t0 + 60 * 60_000 + i);
    expect(spike).toMatchObject({ tenantId: 'old', windowCount: 25, factor: 5 });
  });
});
