import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startForge, type RunningForge } from '../cli/forge-process.ts';
import { runnerConfigFromEnv, SIM_TASK_SCRIPT, startRunner, TaskQueue, type StartedRunner, type TaskSpec } from '../runner/index.ts';
import { expandPlatformPromql, platformHealthDashboard } from '../dashboards/index.ts';
import { startPrometheus, type PrometheusServer } from './helpers/prometheus.ts';
import { checkPagerDutyEvent, checkSlackMessage, HttpReceiver, pagerDutyOk } from './helpers/http-receiver.ts';
import { freshPrefix, startRedis, waitFor, type RedisServer } from './helpers/redis.ts';

// A hung task pages on-call: `forge runner` (BullMQ on a real Redis) kills it and reports it to the API,
// whose dispatcher pages PagerDuty (loopback). Both processes export their platform metrics.
const ROUTING_KEY = 'R0UT1NGKEYhungtask0123456789abcd';
let redis: RedisServer;
let forge: RunningForge;
let runner: StartedRunner;
let queue: TaskQueue;
let slack: HttpReceiver;
let pd: HttpReceiver;
let dir: string;
let metricsKey: string;
let runnerKey: string;
let prom: PrometheusServer | undefined;
const errors: string[] = [];
const queueName = `q-${freshPrefix('h')}`.replace(/:/g, '');

beforeAll(async () => {
  redis = await startRedis();
  slack = await HttpReceiver.start({ check: ({ json }) => checkSlackMessage(json) });
  pd = await HttpReceiver.start({ check: ({ json }) => checkPagerDutyEvent(json, ROUTING_KEY), ok: pagerDutyOk });
  dir = mkdtempSync(join(tmpdir(), 'forge-platform-'));
  writeFileSync(join(dir, 'bands.yaml'), 'global:\n  B_day_soft: 8000\n  B_day_hard: 10000\n  B_week_soft: 40000\n  B_week_hard: 50000\n  B_run_cap: 100000\n  B_unit_cap: 1000\ntenants:\n  acme:\n    B_day_soft: 800\n    B_day_hard: 1000\n');
  writeFileSync(
    join(dir, 'alerts.yaml'),
    `links:\n  dashboardUrl: http://grafana.test/d/burn?scope={scope}\n  acknowledgeUrl: http://forge.test/v1/guardrail/{scope}/acknowledge\ndelivery:\n  maxAttempts: 3\n  initialBackoffMs: 10\n  maxBackoffMs: 50\n  timeoutMs: 2000\ndestinations:\n  slack:\n    type: slack\n    webhookUrl: \${T_SLACK}\n  pd:\n    type: pagerduty\n    routingKey: \${T_PD_KEY}\n    url: \${T_PD_URL}\nroutes:\n  hung_task: [pd, slack]\n  anomaly: [slack]\n`,
  );
  const prefix = freshPrefix('ph');
  forge = await startForge({
    env: {
      FORGE_DATA_DIR: join(dir, 'data'), FORGE_PORT: '0', FORGE_HOST: '127.0.0.1', FORGE_BUDGETS_FILE: join(dir, 'bands.yaml'), FORGE_ALERTS_FILE: join(dir, 'alerts.yaml'), FORGE_LOG_LEVEL: 'silent',
      FORGE_REDIS_URL: redis.url, FORGE_REDIS_PREFIX: prefix,
      // Prometheus scrapes without a key here (public metrics leave out every tenant's series).
      FORGE_METRICS_PUBLIC: 'true',
      T_SLACK: `${slack.url}/services/T000/B000/secretpath`, T_PD_KEY: ROUTING_KEY, T_PD_URL: `${pd.url}/v2/enqueue`,
    },
    log: (l) => errors.push(l),
  });
  runnerKey = (await forge.keys.create({ name: 'runner-acme', roles: ['runner'], tenantId: 'acme' })).key;
  metricsKey = (await forge.keys.create({ name: 'oncall', roles: ['oncall'], tenantId: null })).key;
  const cfg = runnerConfigFromEnv({
    FORGE_REDIS_URL: redis.url, FORGE_REDIS_PREFIX: prefix, FORGE_API_URL: forge.url, FORGE_API_KEY: runnerKey, FORGE_RUNNER_QUEUE: queueName,
    FORGE_RUNNER_CONCURRENCY: '2', FORGE_RUNNER_METRICS_PORT: '0', FORGE_RUNNER_BEAT_MS: '200', FORGE_PRICING_FILE: 'config/pricing.yaml',
  });
  runner = await startRunner(cfg, { onError: (e, where) => errors.push(`${where}: ${String(e)}`) });
  queue = new TaskQueue({ redisUrl: redis.url, queueName });
}, 60_000);

afterAll(async () => {
  await prom?.stop();
  await queue?.close();
  await runner?.close({ abort: true });
  await forge?.close();
  await slack?.close();
  await pd?.close();
  await redis?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The value of the series `name` carrying all of `labels` (any order), or undefined. */
function sample(text: string, name: string, labels: Record<string, string>): number | undefined {
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)\{(.*)\} (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const have = new Map([...m[2]!.matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((x) => [x[1]!, x[2]!]));
    if (Object.entries(labels).every(([k, v]) => have.get(k) === v)) return Number(m[3]);
  }
  return undefined;
}

function hangingTask(taskId: string): TaskSpec {
  return {
    taskId, tenantId: 'acme', runId: 'r-hang', taskType: 'eval.test', environment: 'test', secondsPerHour: 1, heartbeatTimeoutMs: 400,
    profile: { rliEvalUsd: '0.10', gasUsed: 0, runtimeHours: '0.01', llm: [] },
    command: { cmd: 'node', args: [SIM_TASK_SCRIPT], env: { FORGE_SIM_DURATION_MS: '60000', FORGE_SIM_HEARTBEAT_MS: '50', FORGE_SIM_HANG_AFTER_MS: '100' } },
  };
}

describe('platform health: hung tasks page, runner and API export their metrics', () => {
  it('a hung task is killed by forge runner and pages PagerDuty through the API; kills, beats and queue depth are exported', async () => {
    await queue.add(hangingTask('hangs-1'));
    await pd.waitForCount(1);
    const page = pd.requests[0]!.json as { event_action: string; dedup_key: string; payload: { summary: string; custom_details: Record<string, unknown> } };
    expect(pd.problems()).toEqual([]);
    expect(page.event_action).toBe('trigger');
    expect(page.dedup_key).toContain('run:acme/r-hang/hung_task:hangs-1/');
    expect(page.payload.custom_details).toMatchObject({ task_id: 'hangs-1', tenant_id: 'acme' });
    await slack.waitForCount(1);

    const url = runner.metrics.url!;
    let text = '';
    await waitFor('runner kill counted', async () => {
      text = await (await fetch(`${url}/metrics`)).text();
      return sample(text, 'forge_runner_kills_total', { queue: queueName, reason: 'hung', service: 'forge-runner' }) === 1;
    });
    expect(sample(text, 'forge_runner_heartbeats_total', { queue: queueName })).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'forge_runner_concurrency', { queue: queueName })).toBe(2);
    expect(sample(text, 'forge_runner_queue_depth', { queue: queueName })).toBeGreaterThanOrEqual(0);
    expect(sample(text, 'forge_runner_tasks_in_flight', { queue: queueName })).toBeGreaterThanOrEqual(0);
    expect(sample(text, 'forge_runner_kills_total', { queue: queueName, reason: 'emergency' })).toBe(0);
    expect(text).toContain('forge_process_nodejs_eventloop_lag_seconds');
    expect(text).toContain('forge_process_nodejs_heap_size_used_bytes');
  });

  it('the API exports requests, errors and latency per route template, process metrics, and stop counts at 0', async () => {
    const hung = { route: '/v1/alerts/hung-tasks', method: 'POST', service: 'forge-api' };
    let text = '';
    // The runner's report is counted once its response is sent (after the page and the Slack post).
    await waitFor('hung-task request counted', async () => {
      const res = await fetch(`${forge.url}/metrics`, { headers: { authorization: `Bearer ${metricsKey}` } });
      expect(res.status).toBe(200);
      text = await res.text();
      return sample(text, 'forge_api_requests_total', { ...hung, status: '202' }) !== undefined;
    });
    expect(sample(text, 'forge_api_requests_total', { ...hung, status: '202' })).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'forge_api_request_duration_seconds_count', hung)).toBeGreaterThanOrEqual(1);
    expect(sample(text, 'forge_api_request_duration_seconds_bucket', { ...hung, le: '+Inf' })).toBeGreaterThanOrEqual(1);
    // Declared routes read 0 before their first error.
    expect(sample(text, 'forge_api_request_errors_total', { route: '/v1/admissions', method: 'POST', status: '500' })).toBe(0);
    expect(text).toContain('forge_process_nodejs_gc_duration_seconds');
    expect(sample(text, 'forge_stop_condition_hard_stop_count', { scope: 'global', tenant: '' })).toBe(0);
  });

  it('a hung-task report for another tenant is refused with the field named', async () => {
    const other = (await forge.keys.create({ name: 'runner-other', roles: ['runner'], tenantId: 'other' })).key;
    const r = await fetch(`${forge.url}/v1/alerts/hung-tasks`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${other}` }, body: JSON.stringify({ tenant_id: 'acme', run_id: 'r', task_id: 't', silent_for_ms: 1 }) });
    expect(r.status).toBe(403);
    expect(((await r.json()) as { error: { field: string } }).error.field).toBe('tenant_id');
    const bad = await fetch(`${forge.url}/v1/alerts/hung-tasks`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${other}` }, body: JSON.stringify({ tenant_id: 'other', run_id: 'r', task_id: 't', silent_for_ms: -1 }) });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { field: string } }).error.field).toContain('silent_for_ms');
  });
});

describe('cost anomaly: a running task past 3x the normal cost of its type is killed', () => {
  it('normal cost is learned from finalized tasks; the runner aborts the task on its progress; the kill is audited and alerted', async () => {
    const auth = { 'content-type': 'application/json', authorization: `Bearer ${runnerKey}` };
    // Before any history the normal cost is the unit cap.
    const before = (await (await fetch(`${forge.url}/v1/anomalies/normal-cost?tenant_id=acme&task_type=eval.anomaly`, { headers: auth })).json()) as { source: string; normal_usd: string };
    expect(before.source).toBe('unit_cap');
    for (let i = 0; i < 5; i++) {
      const r = await fetch(`${forge.url}/v1/events`, {
        method: 'POST', headers: auth,
        body: JSON.stringify({ event_id: `hist-${i}`, tenant_id: 'acme', run_id: 'r-hist', task_id: `h${i}`, task_type: 'eval.anomaly', environment: 'cpu-standard', status: 'success', finalized_at: new Date().toISOString(), rli_eval_usd: i === 4 ? '0.90' : '0.10', task_hours: '0' }),
      });
      expect(r.status).toBe(200);
    }
    const normal = (await (await fetch(`${forge.url}/v1/anomalies/normal-cost?tenant_id=acme&task_type=eval.anomaly`, { headers: auth })).json()) as { source: string; normal_usd: string; ceiling_usd: string; samples: number };
    // The median ignores the one expensive task.
    expect(normal).toMatchObject({ source: 'median', samples: 5 });
    // $0.10 fee plus the collector's own allocations (storage share): about $0.11, far from the $0.90 outlier.
    const normalMicros = Math.round(Number(normal.normal_usd) * 1e6);
    const ceilingMicros = Math.round(Number(normal.ceiling_usd) * 1e6);
    expect(normalMicros).toBeGreaterThanOrEqual(100_000);
    expect(normalMicros).toBeLessThan(200_000);
    expect(ceilingMicros).toBe(3 * normalMicros);

    const slackBefore = slack.requests.length;
    await queue.add({
      taskId: 'runaway-1', tenantId: 'acme', runId: 'r-anomaly', taskType: 'eval.anomaly', model: 'gpt-4o', environment: 'cpu-standard', secondsPerHour: 3600,
      profile: { rliEvalUsd: '0.05', gasUsed: 0, runtimeHours: '0.0001', llm: [{ model: 'gpt-4o', inputTokens: 1000, outputTokens: 0 }] },
      // Each progress line adds 20k input tokens of gpt-4o ($0.05): past $0.30 after a handful of beats.
      command: { cmd: 'node', args: [SIM_TASK_SCRIPT], env: { FORGE_SIM_DURATION_MS: '60000', FORGE_SIM_HEARTBEAT_MS: '50', FORGE_SIM_PROGRESS: JSON.stringify({ llm: [{ model: 'gpt-4o', inputTokens: 20_000, outputTokens: 0 }] }) } },
    });
    await waitFor('anomaly audited', async () => (await forge.store.guardrailEvents({ scope: { tenantId: 'acme' }, from: 0, to: Date.now() + 60_000, kinds: ['anomaly'] })).length === 1, 30_000);
    const [row] = await forge.store.guardrailEvents({ scope: { tenantId: 'acme' }, from: 0, to: Date.now() + 60_000, kinds: ['anomaly'] });
    expect(row).toMatchObject({ kind: 'anomaly', scope: 'run:acme/r-anomaly' });
    const d = row!.details as { anomaly: string; task_id: string; cost_so_far_micros: number; ceiling_micros: number };
    expect(d).toMatchObject({ anomaly: 'cost_kill', task_id: 'runaway-1', ceiling_micros: ceilingMicros });
    expect(d.cost_so_far_micros).toBeGreaterThan(ceilingMicros);
    // Killed at its first progress past the ceiling, long before its 60 s.
    expect(d.cost_so_far_micros).toBeLessThan(1_000_000);
    await waitFor('anomaly posted to Slack', () => slack.requests.slice(slackBefore).some((r) => r.body.includes('ANOMALY') && r.body.includes('runaway-1')), 10_000);
    await waitFor('kill counted', async () => sample(await (await fetch(`${runner.metrics.url!}/metrics`)).text(), 'forge_runner_kills_total', { queue: queueName, reason: 'anomaly' }) === 1, 10_000);
  }, 60_000);
});

describe('model fallback: a pricier provider notifies', () => {
  it('a fallback to a pricier model is audited and alerted; a cheaper one is not', async () => {
    const post = (body: unknown) => fetch(`${forge.url}/v1/anomalies/model-fallback`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${runnerKey}` }, body: JSON.stringify(body) });
    const slackBefore = slack.requests.length;
    const up = await post({ tenant_id: 'acme', run_id: 'r-fb', task_id: 'fb-1', from_model: 'gpt-4o-mini', to_model: 'gpt-4o' });
    expect(up.status).toBe(202);
    expect(await up.json()).toEqual({ pricier: true, from_mtok_usd: '0.75', to_mtok_usd: '12.5', alerted: true });
    const down = await post({ tenant_id: 'acme', run_id: 'r-fb', task_id: 'fb-2', from_model: 'gpt-4o', to_model: 'gpt-4o-mini' });
    expect(await down.json()).toMatchObject({ pricier: false, alerted: false });
    const rows = await forge.store.guardrailEvents({ scope: { tenantId: 'acme' }, from: 0, to: Date.now() + 60_000, kinds: ['anomaly'], scopeKey: 'run:acme/r-fb' });
    expect(rows.map((r) => (r.details as { task_id: string; anomaly: string }).task_id)).toEqual(['fb-1']);
    expect(rows[0]!.details).toMatchObject({ anomaly: 'model_fallback', from_model: 'gpt-4o-mini', to_model: 'gpt-4o' });
    expect(slack.requests.slice(slackBefore).filter((r) => r.body.includes('pricier model'))).toHaveLength(1);
  });
});

describe('platform health dashboard on the embedded default: a real Prometheus scraping Forge and its runner', () => {
  it('every panel query of the generated dashboard returns data', async () => {
    const hostOf = (u: string): string => new URL(u).host;
    prom = await startPrometheus({ targets: [hostOf(forge.url), hostOf(runner.metrics.url!)], scrapeIntervalS: 1 });
    // Enough scrapes for rate() and increase() over the test's short window.
    await prom.waitFor('count_over_time(forge_runner_heartbeats_total[1m])', (s) => s.some((x) => x.value >= 3), 60_000);
    await prom.waitFor('count_over_time(forge_api_requests_total[1m])', (s) => s.some((x) => x.value >= 3), 60_000);
    // Traffic during the window, so request rates and latencies are non-empty.
    for (let i = 0; i < 3; i++) await fetch(`${forge.url}/healthz`);
    await prom.waitFor('count_over_time(up[1m])', (s) => s.length === 2 && s.every((x) => x.value >= 4), 60_000);
    const dash = platformHealthDashboard() as unknown as { panels: Array<{ title: string; datasource: { uid: string }; targets: Array<{ expr: string }> }> };
    expect(dash.panels.length).toBeGreaterThanOrEqual(10);
    for (const panel of dash.panels) {
      expect(panel.datasource.uid, panel.title).toBe('forge-prometheus');
      for (const t of panel.targets) {
        const expr = expandPlatformPromql(t.expr, { rateInterval: '30s', range: '10m' });
        const samples = await prom.waitFor(expr, (x) => x.length > 0 && x.every((v) => Number.isFinite(v.value) || Number.isNaN(v.value)), 30_000);
        expect(samples.length, `${panel.title}: ${expr}`).toBeGreaterThan(0);
      }
    }
    const kills = await prom.query(expandPlatformPromql('sum by (queue, reason) (increase(forge_runner_kills_total[$__range]))', { rateInterval: '30s', range: '10m' }));
    expect(kills.map((k) => k.metric.reason).sort()).toEqual(['anomaly', 'emergency', 'hung']);
  }, 120_000);
});
