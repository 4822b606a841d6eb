import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  AlertDispatcher,
  MemoryAlertLogSink,
  parseAlertsConfig,
  spendAlertsOf,
  storeAlertHistory,
  storeAlertLogSink,
  type AlertLogger,
  type AlertLogSink,
  type SpendSnapshot,
} from '../alerts/index.ts';
import type { StateChange } from '../rules/index.ts';
import { openStore, type Store } from '../store/index.ts';
import { checkPagerDutyEvent, checkSlackMessage, HttpReceiver, pagerDutyOk } from './helpers/http-receiver.ts';
import { SmtpReceiver } from './helpers/smtp.ts';

// Email through a real SMTP server on loopback (smtp-server), parsed with mailparser; the same dispatcher
// rules (routing, dedup, retry, dead letters) as Slack and PagerDuty; user spend alerts once per threshold
// and month, across a restart, with the alert log in the real store (embedded ClickHouse).
let dir: string;
let store: Store;
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'forge-alerts-email-'));
  store = await openStore({ dataDir: dir });
});
afterAll(async () => {
  await store?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const T0 = Date.UTC(2026, 2, 20, 12, 0, 0);
const DASH = 'https://grafana.example.test/d/forge-burn?var-scope={scope}';

interface Rig {
  smtp: SmtpReceiver;
  slack: HttpReceiver;
  pd: HttpReceiver;
  hook: HttpReceiver;
  password: string;
  slackUrl: string;
  logs: string[];
  errors: unknown[];
  sink: MemoryAlertLogSink;
  dispatcher(opts?: { sink?: AlertLogSink; history?: boolean }): AlertDispatcher;
}
const open: Array<{ close(): Promise<unknown> }> = [];
afterEach(async () => {
  for (const c of open.splice(0).reverse()) await c.close();
});

async function rig(): Promise<Rig> {
  const password = randomBytes(12).toString('hex');
  const smtp = await SmtpReceiver.start({ user: 'forge-mailer', password });
  const slack = await HttpReceiver.start({ check: ({ json }) => checkSlackMessage(json) });
  const routingKey = randomBytes(16).toString('hex');
  const pd = await HttpReceiver.start({ check: ({ json }) => checkPagerDutyEvent(json, routingKey), ok: pagerDutyOk });
  const hook = await HttpReceiver.start();
  open.push(smtp, slack, pd, hook);
  const slackUrl = `${slack.url}/services/T0/B0/${randomBytes(10).toString('hex')}`;
  const hookUrl = `${hook.url}/hooks/${randomBytes(10).toString('hex')}`;
  const config = parseAlertsConfig(
    {
      source: 'forge-test',
      links: { dashboardUrl: DASH, acknowledgeUrl: 'https://forge.example.test/v1/guardrail/{scope}/acknowledge' },
      delivery: { maxAttempts: 3, initialBackoffMs: 1, maxBackoffMs: 2, timeoutMs: 5000 },
      destinations: {
        slack: { type: 'slack', webhookUrl: '${S}' },
        pd: { type: 'pagerduty', routingKey: '${P}', url: `${pd.url}/v2/enqueue` },
        'email-oncall': { type: 'email', host: '127.0.0.1', port: smtp.port, ignoreTLS: true, username: 'forge-mailer', password: '${SMTP_PASSWORD}', from: 'Forge <forge@example.test>', to: ['oncall@example.test', 'finance@example.test'] },
        'email-users': { type: 'email', host: '127.0.0.1', port: smtp.port, ignoreTLS: true, username: 'forge-mailer', password: '${SMTP_PASSWORD}', from: 'Forge <forge@example.test>' },
        hook: { type: 'webhook', url: '${HOOK}' },
      },
      routes: {
        WARNING: ['slack', 'email-oncall', 'hook'],
        HARD_STOP: ['pd', 'slack'],
        EMERGENCY_STOP: ['pd', 'slack'],
        user_spend: ['email-users'],
      },
    },
    { S: slackUrl, P: routingKey, SMTP_PASSWORD: password, HOOK: hookUrl },
  );
  const logs: string[] = [];
  const errors: unknown[] = [];
  const sink = new MemoryAlertLogSink();
  const cap = (level: string) => (f: Record<string, unknown>, m: string) => void logs.push(JSON.stringify({ level, m, ...f }));
  const logger: AlertLogger = { info: cap('info'), warn: cap('warn'), error: cap('error') };
  return {
    smtp,
    slack,
    pd,
    hook,
    password,
    slackUrl,
    logs,
    errors,
    sink,
    dispatcher(o = {}) {
      const d = new AlertDispatcher({ config, sink: o.sink ?? sink, logger, onError: (e) => errors.push(e), ...(o.history ? { history: storeAlertHistory(store) } : {}) });
      open.push({ close: () => d.stop() });
      return d;
    },
  };
}

function warning(scope: string, seq = 1): StateChange {
  return {
    scope,
    previous: 'NORMAL',
    state: 'WARNING',
    seq,
    at: T0,
    reason: 'day_soft',
    holds: [{ id: 'day_soft', level: 'WARNING', metric: 'forge.cost.total.day_usd', unit: 'usd_micros', value: 850_250_000, threshold: 800_000_000, topComponent: 'gas' }],
    weekMicros: 4_200_500_000,
  };
}

describe('alerts: email over SMTP and the generic webhook', () => {
  it('a WARNING reaches Slack, the on-call email list and the webhook; the mail carries value, threshold, 7-day burn, top component and a link', async () => {
    const r = await rig();
    const d = r.dispatcher();
    const scope = `tenant:t-${randomUUID().slice(0, 8)}`;
    const res = await d.onStateChange(warning(scope));
    expect(res.outcome).toBe('dispatched');
    expect(r.smtp.mails).toHaveLength(1);
    const mail = r.smtp.mails[0]!;
    expect(mail.user).toBe('forge-mailer');
    expect(mail.envelopeTo.sort()).toEqual(['finance@example.test', 'oncall@example.test']);
    expect(mail.parsed.subject).toContain(scope);
    const text = mail.parsed.text ?? '';
    expect(text).toContain('$850.25');
    expect(text).toContain('$800');
    expect(text).toContain('$4200.5');
    expect(text).toMatch(/Top component: Gas/i);
    expect(text).toContain(DASH.replace('{scope}', encodeURIComponent(scope)));
    expect(String(mail.parsed.html)).toContain('href="https://grafana.example.test/d/forge-burn?var-scope=');
    expect(mail.parsed.headers.get('x-forge-dedup-key')).toBe(res.outcome === 'dispatched' ? res.dedupKeys[0] : '');
    expect(r.slack.accepted()).toHaveLength(1);
    expect(r.pd.requests).toHaveLength(0);
    const body = r.hook.requests[0]?.json as { version: number; kind: string; scope: string; state: string; facts: Array<{ label: string }>; links: { dashboard: string } };
    expect(body).toMatchObject({ version: 1, kind: 'guard', scope, state: 'WARNING' });
    expect(body.facts.map((f) => f.label)).toContain('Trailing 7-day burn');
    // The same warning again: no second mail (dedup as for Slack).
    await d.onStateChange(warning(scope, 2));
    expect(r.smtp.mails).toHaveLength(1);
  });

  it('a HARD_STOP pages and posts to Slack but sends no email (routing)', async () => {
    const r = await rig();
    const d = r.dispatcher();
    const scope = `tenant:t-${randomUUID().slice(0, 8)}`;
    await d.onStateChange({ ...warning(scope), state: 'HARD_STOP', holds: [{ id: 'day_hard', level: 'HARD_STOP', metric: 'forge.cost.total.day_usd', unit: 'usd_micros', value: 1_000_000_000, threshold: 1_000_000_000, topComponent: 'llm' }] });
    expect(r.pd.accepted()).toHaveLength(1);
    expect(r.slack.accepted()).toHaveLength(1);
    expect(r.smtp.mails).toHaveLength(0);
  });

  it('a transient SMTP refusal (451) is retried; a permanent one (550) is dead-lettered at once; the password is never logged', async () => {
    const r = await rig();
    const d = r.dispatcher();
    r.smtp.failNext(1, 451);
    const a = await d.onStateChange(warning(`tenant:t-${randomUUID().slice(0, 8)}`));
    const email = a.outcome === 'dispatched' ? a.deliveries.find((x) => x.destination === 'email-oncall') : undefined;
    expect(email).toMatchObject({ status: 'delivered', attempts: 2 });
    expect(r.smtp.mails).toHaveLength(1);
    r.smtp.failNext(1, 550);
    const b = await d.onStateChange(warning(`tenant:t-${randomUUID().slice(0, 8)}`));
    const dead = b.outcome === 'dispatched' ? b.deliveries.find((x) => x.destination === 'email-oncall') : undefined;
    expect(dead).toMatchObject({ status: 'dead_letter', attempts: 1, httpStatus: 550 });
    const deadRec = r.sink.records.find((x) => x.status === 'dead_letter');
    expect(deadRec?.destinationType).toBe('email');
    expect(deadRec?.payload).toContain('oncall@example.test');
    const everything = JSON.stringify([r.logs, r.sink.records, r.errors.map(String), d.describe()]);
    expect(everything).not.toContain(r.password);
    expect(everything).not.toContain(r.slackUrl);
    expect(everything).not.toContain('/hooks/');
  });
});

describe('alerts: user spend alerts by email, once per threshold and month', () => {
  const snap = (tenantId: string, executions: number, monthMicros: number, now = T0): SpendSnapshot => ({
    tenantId,
    userId: 'u-1',
    email: `owner+${tenantId}@example.test`,
    executions,
    executionsLimit: 1000,
    monthMicros,
    monthlyBudgetMicros: 300_000_000,
    weekMicros: 70_500_000,
    topComponent: 'llm',
    now,
  });

  it('50% and 80% of the tier executions go to the user once, survive a restart, and 100% follows alone', async () => {
    const r = await rig();
    const tenant = `t-${randomUUID().slice(0, 8)}`;
    const sink = storeAlertLogSink(store);
    const d1 = r.dispatcher({ sink, history: true });
    const first = spendAlertsOf(snap(tenant, 850, 0));
    expect(first.map((a) => `${a.metric}:${a.percent}`)).toEqual(['executions_month:50', 'executions_month:80']);
    for (const a of first) expect((await d1.notifySpend(a)).outcome).toBe('dispatched');
    expect(r.smtp.mails).toHaveLength(2);
    const m80 = r.smtp.mails.find((m) => m.parsed.subject?.includes('80%'));
    expect(m80?.envelopeTo).toEqual([`owner+${tenant}@example.test`]);
    const text = m80?.parsed.text ?? '';
    expect(text).toContain('Current value: 850');
    expect(text).toContain('Threshold: 800 (80% of 1000)');
    expect(text).toContain('Trailing 7-day burn: $70.5');
    expect(text).toMatch(/Top component: LLM/i);
    expect(text).toContain(`var-scope=${encodeURIComponent(`tenant:${tenant}`)}`);
    // Same totals again in this process: nothing new.
    for (const a of spendAlertsOf(snap(tenant, 860, 0))) await d1.notifySpend(a);
    expect(r.smtp.mails).toHaveLength(2);
    await d1.stop();

    // A restart: a new dispatcher knows only the alert log in the store.
    const d2 = r.dispatcher({ sink, history: true });
    const again = spendAlertsOf(snap(tenant, 1000, 0, T0 + 3_600_000));
    const outcomes = [];
    for (const a of again) outcomes.push(await d2.notifySpend(a));
    expect(outcomes.map((o) => (o.outcome === 'dispatched' ? o.deliveries[0]?.status : o.outcome))).toEqual(['duplicate', 'duplicate', 'delivered']);
    expect(r.smtp.mails).toHaveLength(3);
    expect(r.smtp.mails[2]?.parsed.subject).toContain('100%');
    expect(r.errors).toEqual([]);
  });

  it('the estimated monthly cost crosses its thresholds from the pace so far; a new month alerts again', async () => {
    const r = await rig();
    const tenant = `t-${randomUUID().slice(0, 8)}`;
    const d = r.dispatcher({ sink: storeAlertLogSink(store), history: true });
    // March 20th noon: 19.5 of 31 days passed; $160 so far -> about $254 for the month (84.8% of $300).
    const est = spendAlertsOf(snap(tenant, 0, 160_000_000)).filter((a) => a.metric === 'monthly_cost');
    expect(est.map((a) => a.percent)).toEqual([50, 80]);
    expect(est[0]?.value).toBe(Math.floor((160_000_000 * 31) / 19.5));
    for (const a of est) await d.notifySpend(a);
    expect(r.smtp.mails.map((m) => m.parsed.subject)).toEqual([expect.stringContaining('50% of your monthly budget'), expect.stringContaining('80% of your monthly budget')]);
    expect(r.smtp.mails[1]?.parsed.text).toContain('Current value: $254.358974');
    // April: the same percentages are a new period.
    const april = Date.UTC(2026, 3, 2, 12);
    for (const a of spendAlertsOf(snap(tenant, 0, 8_000_000, april)).filter((x) => x.metric === 'monthly_cost')) await d.notifySpend(a);
    expect(r.smtp.mails).toHaveLength(3);
  });

  it('a bad spend alert names the field and sends nothing', async () => {
    const r = await rig();
    const d = r.dispatcher();
    const [a] = spendAlertsOf(snap(`t-${randomUUID().slice(0, 8)}`, 600, 0));
    const res = await d.notifySpend({ ...a!, email: 'not-an-address' });
    expect(res.outcome).toBe('invalid');
    expect(res.outcome === 'invalid' ? res.error.field : '').toBe('spendAlert.email');
    expect(r.smtp.mails).toHaveLength(0);
  });
});
