import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { readFileSync } from 'node:fs';
import { AlertsConfigError, loadAlertsConfig, PAGERDUTY_EVENTS_URL, parseAlertsConfig, Secret } from '../alerts/index.ts';

const ENV = {
  FORGE_DASHBOARD_URL: 'https://grafana.example.test/d/forge-burn?var-scope={scope}',
  FORGE_ACK_URL: 'https://forge.example.test/v1/guardrail/{scope}/acknowledge',
  FORGE_SLACK_WEBHOOK_URL: 'https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX',
  FORGE_PAGERDUTY_ROUTING_KEY: '0123456789abcdef0123456789abcdef',
  FORGE_SMTP_HOST: 'smtp.example.test',
  FORGE_SMTP_USER: 'forge',
  FORGE_SMTP_PASSWORD: 'smtp-XXXXSECRETXXXX',
  FORGE_ALERT_EMAIL_FROM: 'Forge <forge@example.test>',
  FORGE_ONCALL_EMAIL: 'oncall@example.test',
};

function raw(): Record<string, unknown> {
  return parse(readFileSync('config/alerts.yaml', 'utf8')) as Record<string, unknown>;
}

function configError(f: () => unknown): AlertsConfigError {
  try {
    f();
  } catch (e) {
    if (e instanceof AlertsConfigError) return e;
    throw e;
  }
  throw new Error('expected an AlertsConfigError');
}

describe('alerts config', () => {
  it('the shipped config/alerts.yaml loads with secrets from the environment', () => {
    const c = loadAlertsConfig('config/alerts.yaml', ENV);
    expect(c.routes.WARNING).toEqual(['slack-oncall', 'email-oncall']);
    expect(c.routes.user_spend).toEqual(['email-users']);
    const mail = c.destinations.get('email-oncall');
    expect(mail?.type === 'email' && mail.to).toEqual(['oncall@example.test']);
    expect(mail?.type === 'email' && mail.password?.reveal()).toBe(ENV.FORGE_SMTP_PASSWORD);
    expect(JSON.stringify(mail)).not.toContain('XXXXSECRETXXXX');
    const e = configError(() => loadAlertsConfig('config/alerts.yaml', { ...ENV, FORGE_ONCALL_EMAIL: 'nobody' }));
    expect(e.field).toBe('destinations.email-oncall.to.0');
    expect(c.routes.HARD_STOP).toEqual(['pagerduty-oncall', 'slack-oncall']);
    const slack = c.destinations.get('slack-oncall');
    const pd = c.destinations.get('pagerduty-oncall');
    expect(slack?.type === 'slack' && slack.webhookUrl).toBeInstanceOf(Secret);
    expect(slack?.type === 'slack' && slack.webhookUrl.reveal()).toBe(ENV.FORGE_SLACK_WEBHOOK_URL);
    expect(pd?.type === 'pagerduty' && pd.url).toBe(PAGERDUTY_EVENTS_URL);
    expect(pd?.rateLimit).toEqual({ burst: 20, perMinute: 60, maxWaitMs: 60000 });
    expect(slack?.retry).toEqual({ maxAttempts: 6, initialBackoffMs: 500, maxBackoffMs: 60000, timeoutMs: 10000 });
    expect(c.renotifyIntervalMs).toBe(1_800_000);
    expect(c.links.dashboardUrl).toBe(ENV.FORGE_DASHBOARD_URL);
  });

  it('a literal secret in config is refused, naming the field', () => {
    const r = raw();
    (r.destinations as Record<string, Record<string, unknown>>)['slack-oncall']!.webhookUrl = ENV.FORGE_SLACK_WEBHOOK_URL;
    const e = configError(() => parseAlertsConfig(r, ENV));
    expect(e.code).toBe('FORGE_ERR_ALERTS_CONFIG');
    expect(e.field).toBe('destinations.slack-oncall.webhookUrl');
    expect(e.message).toContain('environment variable reference');
    expect(e.message).not.toContain('XXXXSECRETXXXX');
  });

  it('a missing environment variable is named; a bad secret URL is refused without echoing it', () => {
    const { FORGE_PAGERDUTY_ROUTING_KEY: _k, ...noKey } = ENV;
    const e = configError(() => parseAlertsConfig(raw(), noKey));
    expect(e.field).toBe('destinations.pagerduty-oncall.routingKey');
    expect(e.message).toContain('FORGE_PAGERDUTY_ROUTING_KEY is not set');

    const e2 = configError(() => parseAlertsConfig(raw(), { ...ENV, FORGE_SLACK_WEBHOOK_URL: 'ftp://hooks/XXXXSECRETXXXX' }));
    expect(e2.field).toBe('destinations.slack-oncall.webhookUrl');
    expect(e2.message).not.toContain('XXXXSECRETXXXX');
  });

  it('routes must name configured destinations; numbers are bounded', () => {
    const r = raw();
    (r.routes as Record<string, string[]>).HARD_STOP = ['pagerduty-oncall', 'pagerduty-typo'];
    expect(configError(() => parseAlertsConfig(r, ENV)).field).toBe('routes.HARD_STOP.1');

    const r2 = raw();
    (r2.renotify as Record<string, unknown>).intervalSeconds = 0;
    expect(configError(() => parseAlertsConfig(r2, ENV)).field).toBe('renotify.intervalSeconds');

    const r3 = raw();
    (r3.delivery as Record<string, unknown>).maxAttempts = 'three';
    expect(configError(() => parseAlertsConfig(r3, ENV)).field).toBe('delivery.maxAttempts');

    const r4 = raw();
    (r4.destinations as Record<string, Record<string, unknown>>)['x'] = { type: 'teams', webhookUrl: '${X}' };
    expect(configError(() => parseAlertsConfig(r4, ENV)).field).toBe('destinations.x.type');
  });
});
