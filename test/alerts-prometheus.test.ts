import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Fastify from 'fastify';
import { afterAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { ForgeMetrics } from '../collector/index.ts';
import { zeroComponents, type ConditionHit, type GuardState } from '../rules/index.ts';
import { eventually, startAlertmanager, startPrometheusWithRules, type LocalService } from './helpers/alertmanager.ts';
import { checkPagerDutyEvent, HttpReceiver, pagerDutyOk } from './helpers/http-receiver.ts';

const run = promisify(execFile);
const DIR = 'alerts/prometheus';
const RULES = join(DIR, 'forge-alerts.rules.yml');
const AM_CONFIG = join(DIR, 'alertmanager.yml');

describe('alerts: the Alertmanager path files', () => {
  it('promtool check rules and the promtool rule unit tests pass', async () => {
    const check = await run('/usr/bin/promtool', ['check', 'rules', RULES]);
    expect(check.stdout).toMatch(/SUCCESS: 12 rules found/);
    const unit = await run('/usr/bin/promtool', ['test', 'rules', 'forge-alerts.test.yml'], { cwd: DIR });
    expect(unit.stdout).toContain('SUCCESS');
  });

  it('amtool check-config passes, and the config holds no literal secret', async () => {
    const check = await run('/usr/bin/amtool', ['check-config', AM_CONFIG]);
    expect(check.stdout).toContain('SUCCESS');
    const text = readFileSync(AM_CONFIG, 'utf8');
    expect(text).not.toMatch(/^\s*(api_url|routing_key|service_key):/m);
    expect(text).toContain('api_url_file:');
    expect(text).toContain('routing_key_file:');
  });
});

describe('alerts: rules fire against a real Prometheus scraping live Forge metrics', () => {
  const cleanup: Array<() => Promise<void>> = [];
  afterAll(async () => {
    for (const f of cleanup.reverse()) await f().catch(() => {});
  });

  it('HARD_STOP pages PagerDuty through Alertmanager, WARNING reaches Slack only, with value, threshold, burn, component', async () => {
    // Live Forge metrics: the collector's ForgeMetrics rendered on a loopback /metrics.
    const id = randomUUID().slice(0, 8);
    const warnScope = `tenant:w-${id}`;
    const stopScope = `tenant:h-${id}`;
    const metrics = new ForgeMetrics();
    cleanup.push(() => metrics.shutdown());
    const bands = { daySoft: 800_000_000, dayHard: 1_000_000_000, weekSoft: 4_000_000_000, weekHard: 5_000_000_000, runCap: 0, unitCap: 5_000_000 };
    const components = { ...zeroComponents(), rli: 100_000_000, gas: 200_000_000, compute: 700_500_000, storage: 10_000_000, llm: 10_000_000 };
    const hit: ConditionHit = { id: 'day_hard', level: 'HARD_STOP', metric: 'forge.cost.total.day_usd', unit: 'usd_micros', value: 1_020_500_000, threshold: 1_000_000_000, topComponent: 'compute' };
    const set = (scope: string, dayMicros: number, state: GuardState, holds: ConditionHit[]): void => {
      metrics.setBudgets(scope, bands);
      metrics.setScopeTotals(scope, { dayMicros, weekMicros: 4_200_500_000, runMicros: dayMicros, components });
      metrics.recordStateChange({ scope, state, previous: 'NORMAL', seq: 1, at: Date.now(), reason: 'test', holds, weekMicros: 4_200_500_000 });
    };
    set(warnScope, 850_000_000, 'WARNING', []);
    set(stopScope, 1_020_500_000, 'HARD_STOP', [hit]);

    const app = Fastify({ logger: false });
    app.get('/metrics', async (_req, reply) => reply.type('text/plain; version=0.0.4').send(await metrics.render()));
    await app.listen({ port: 0, host: '127.0.0.1' });
    cleanup.push(() => app.close());
    const appAddr = app.server.address();
    const appPort = typeof appAddr === 'object' && appAddr ? appAddr.port : 0;

    // Loopback Slack and PagerDuty, checking what Alertmanager sends.
    const routingKey = randomBytes(16).toString('hex');
    const pd = await HttpReceiver.start({ check: ({ json }) => checkPagerDutyEvent(json, routingKey), ok: pagerDutyOk });
    const slack = await HttpReceiver.start({
      check: ({ json }) => {
        const a = (json as { attachments?: Array<Record<string, unknown>> }).attachments?.[0];
        if (!a) return ['no attachments'];
        return typeof a.title === 'string' && typeof a.text === 'string' ? [] : ['attachment without title/text'];
      },
    });
    cleanup.push(() => pd.close(), () => slack.close());

    // The shipped Alertmanager config, with the secret files and PagerDuty URL pointed at the receivers
    // and the group timings shortened for the test.
    const amConfig = parse(readFileSync(AM_CONFIG, 'utf8')) as {
      global: Record<string, unknown>;
      route: Record<string, unknown>;
      receivers: Array<{ name: string; slack_configs?: Array<Record<string, unknown>>; pagerduty_configs?: Array<Record<string, unknown>> }>;
    };
    const am = await startAlertmanager(
      (dir) => {
        amConfig.global.pagerduty_url = `${pd.url}/v2/enqueue`;
        Object.assign(amConfig.route, { group_wait: '1s', group_interval: '1s' });
        for (const r of amConfig.receivers) {
          for (const s of r.slack_configs ?? []) s.api_url_file = join(dir, 'slack-url');
          for (const p of r.pagerduty_configs ?? []) p.routing_key_file = join(dir, 'pd-key');
        }
        return stringify(amConfig);
      },
      { 'slack-url': `${slack.url}/services/T0AM/B0AM/${randomBytes(8).toString('hex')}`, 'pd-key': routingKey },
    );
    cleanup.push(() => am.stop());

    const prom: LocalService = await startPrometheusWithRules(
      stringify({
        global: { scrape_interval: '1s', evaluation_interval: '1s' },
        rule_files: ['forge-alerts.rules.yml'],
        alerting: { alertmanagers: [{ static_configs: [{ targets: [am.url.replace('http://', '')] }] }] },
        scrape_configs: [{ job_name: 'forge', static_configs: [{ targets: [`127.0.0.1:${appPort}`] }] }],
      }),
      { 'forge-alerts.rules.yml': readFileSync(RULES, 'utf8') },
    );
    cleanup.push(() => prom.stop());

    type PromAlert = { labels: Record<string, string>; annotations: Record<string, string>; state: string };
    const firing = async (name: string, scope: string): Promise<PromAlert | undefined> => {
      const res = await fetch(`${prom.url}/api/v1/alerts`);
      const body = (await res.json()) as { data: { alerts: PromAlert[] } };
      return body.data.alerts.find((a) => a.labels.alertname === name && a.labels.scope === scope && a.state === 'firing');
    };
    const stop = await eventually(() => firing('ForgeGuardrailHardStop', stopScope), `ForgeGuardrailHardStop firing (prometheus log: ${prom.output()})`);
    expect(stop.labels).toMatchObject({ severity: 'error', forge_state: 'HARD_STOP', job: 'forge', tenant: `h-${id}` });
    expect(stop.annotations).toMatchObject({
      scope: stopScope,
      current_value: 'day total $1020.50',
      threshold: 'day hard budget $1000.00',
      trailing_7d_burn_usd: '$4200.50',
      top_component: 'compute',
      dashboard: `https://grafana.example.com/d/forge-burn/forge-burn?var-scope=${encodeURIComponent(stopScope)}`,
    });
    const warn = await eventually(() => firing('ForgeGuardrailWarning', warnScope), 'ForgeGuardrailWarning firing');
    expect(warn.annotations).toMatchObject({ current_value: 'day total $850.00', threshold: 'day soft budget $800.00' });

    // Alertmanager: the stop pages PagerDuty (and Slack); the warning goes to Slack only.
    const page = await eventually(async () => {
      return pd.requests.find((r) => JSON.stringify(r.json).includes(stopScope));
    }, `a PagerDuty event for ${stopScope} (alertmanager log: ${am.output()})`);
    expect(page.problems).toEqual([]);
    expect(page.json).toMatchObject({
      routing_key: routingKey,
      event_action: 'trigger',
      payload: {
        severity: 'error',
        source: 'forge',
        component: stopScope,
        class: 'ForgeGuardrailHardStop',
        custom_details: { scope: stopScope, current_value: 'day total $1020.50', threshold: 'day hard budget $1000.00', trailing_7d_burn_usd: '$4200.50', top_component: 'compute' },
      },
    });
    await eventually(async () => (slack.requests.some((r) => JSON.stringify(r.json).includes(warnScope)) ? true : undefined), `a Slack message for the warning (slack got ${slack.requests.length}: ${slack.requests.map((r) => r.body.slice(0, 300)).join(' | ')}; alertmanager log: ${am.output()})`);
    await eventually(async () => (slack.requests.some((r) => JSON.stringify(r.json).includes(stopScope)) ? true : undefined), 'a Slack message for the stop');
    const warnMsg = slack.requests.find((r) => JSON.stringify(r.json).includes(warnScope))!.json as { attachments: Array<{ title: string; text: string; actions: Array<{ url: string }> }> };
    const att = warnMsg.attachments[0]!;
    expect(att.title).toBe(`WARNING · ForgeGuardrailWarning · ${warnScope}`);
    for (const want of ['Current value: day total $850.00', 'Threshold: day soft budget $800.00', 'Trailing 7-day burn: $4200.50', 'Top component: compute']) {
      expect(att.text).toContain(want);
    }
    expect(att.actions.map((a) => a.url)).toEqual([
      `https://grafana.example.com/d/forge-burn/forge-burn?var-scope=${encodeURIComponent(warnScope)}`,
      `https://forge.example.com/v1/guardrail/${encodeURIComponent(warnScope)}/acknowledge`,
    ]);
    expect(slack.problems()).toEqual([]);
    expect(pd.requests.some((r) => JSON.stringify(r.json).includes(warnScope))).toBe(false);
    expect(pd.problems()).toEqual([]);
  });
});
