import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startForge, type RunningForge } from '../cli/forge-process.ts';
import { AccountTables, type UserRecord } from '../store/index.ts';
import { checkSlackMessage, HttpReceiver } from './helpers/http-receiver.ts';
import { SmtpReceiver } from './helpers/smtp.ts';

// Billing's burn alerts (50/80/100% of the tier's executions, of a user's daily spend cap) and a failing BYOK
// key reach people through the dispatcher, on the real server wiring: the billing account's users by email
// (a real SMTP server on loopback, parsed with mailparser), the team's Slack for keys. Once per threshold and
// period: a second crossing sends nothing, and neither does one after a restart (the alert log in the store).

let dir: string;
let forge: RunningForge | undefined;
let smtp: SmtpReceiver;
let slack: HttpReceiver;
let provider: HttpReceiver;
const logs: string[] = [];
const SMTP_PASSWORD = randomBytes(12).toString('hex');
const VAULT_KEY = randomBytes(32).toString('base64');
// Frozen: the month and the UTC day of every threshold. Half of November has passed: the month's estimate
// at this pace is twice the charge so far.
const NOW = Date.UTC(2026, 10, 16, 0, 0, 0);
const clock = { now: NOW };
const DASH = 'https://grafana.example.test/d/forge-burn?var-scope={scope}';

const ANN = 'a0000000000000000000000a';
const BOB = 'b0000000000000000000000b';
const CARL = 'c0000000000000000000000c';
const DANA = 'd0000000000000000000000d';
const GUS = 'e0000000000000000000000e';
const DORA = 'f0000000000000000000000f';

function user(userId: string, email: string, tenantId: string, emailVerified: boolean): UserRecord {
  return {
    userId, email, tenantId, roles: ['runner'], passwordHash: '', emailVerified, totpSecret: '', totpEnabled: false, totpLastStep: 0, recoveryCodes: [], oidcIssuer: '', oidcSubject: '', createdAt: NOW - 86_400_000, version: 1,
  };
}

function env(): NodeJS.ProcessEnv {
  return {
    FORGE_DATA_DIR: join(dir, 'data'), FORGE_PORT: '0', FORGE_HOST: '127.0.0.1', FORGE_BUDGETS_FILE: join(dir, 'bands.yaml'), FORGE_ALERTS_FILE: join(dir, 'alerts.yaml'),
    FORGE_PLANS_FILE: join(dir, 'plans.yaml'), FORGE_USAGE_PRICING_FILE: join(dir, 'usage-pricing.yaml'), FORGE_LOG_LEVEL: 'silent', FORGE_ROLLUP_INTERVAL_MS: '3600000',
    FORGE_VAULT_MASTER_KEY: VAULT_KEY, FORGE_VAULT_MASTER_KEY_ID: 'k1', FORGE_BYOK_OPENAI_BASE_URL: `${provider.url}/v1`,
    SMTP_PASSWORD, T_SLACK: `${slack.url}/services/T000/B000/secretpath`,
  };
}

const start = (): Promise<RunningForge> => startForge({ env: env(), now: () => clock.now, log: (l) => logs.push(l) });

beforeAll(async () => {
  smtp = await SmtpReceiver.start({ user: 'forge-mailer', password: SMTP_PASSWORD });
  slack = await HttpReceiver.start({ check: ({ json }) => checkSlackMessage(json) });
  provider = await HttpReceiver.start({ ok: { status: 200, body: () => '{"data":[]}', contentType: 'application/json' } });
  dir = mkdtempSync(join(tmpdir(), 'forge-billing-alerts-'));
  writeFileSync(join(dir, 'bands.yaml'), 'global:\n  B_day_soft: 100000\n  B_day_hard: 100000\n  B_week_soft: 100000\n  B_week_hard: 100000\n  B_run_cap: 1000000\n  B_unit_cap: 1000\ntenants:\n  acme: {}\n  beta: {}\n  gamma: {}\n  delta: {}\n');
  // The shipped plans, with a Free tier of 10 executions a month (thresholds at 5, 8 and 10).
  writeFileSync(join(dir, 'plans.yaml'), readFileSync('config/plans.yaml', 'utf8').replace('executionsPerMonth: 100    #', 'executionsPerMonth: 10     #'));
  // Pay As You Go at the shipped 0.01 USD an execution, with a monthly cap of 0.10 USD.
  writeFileSync(join(dir, 'usage-pricing.yaml'), readFileSync('config/usage-pricing.yaml', 'utf8').replace('monthlyCapUsd: "50"', 'monthlyCapUsd: "0.1"'));
  writeFileSync(
    join(dir, 'alerts.yaml'),
    [
      'links:',
      `  dashboardUrl: ${DASH}`,
      '  acknowledgeUrl: https://forge.example.test/v1/guardrail/{scope}/acknowledge',
      'delivery:\n  maxAttempts: 3\n  initialBackoffMs: 10\n  maxBackoffMs: 50\n  timeoutMs: 5000',
      'destinations:',
      '  slack-team:\n    type: slack\n    webhookUrl: ${T_SLACK}',
      `  email-users:\n    type: email\n    host: 127.0.0.1\n    port: ${smtp.port}\n    ignoreTLS: true\n    username: forge-mailer\n    password: \${SMTP_PASSWORD}\n    from: Forge <forge@example.test>\n    to: [billing-desk@example.test]`,
      'routes:\n  user_spend: [email-users]\n  key_health: [email-users, slack-team]',
      '',
    ].join('\n'),
  );
  forge = await start();
  const users = new AccountTables(forge.store.client, forge.store.database);
  await users.putUser(user(ANN, 'ann@acme.test', 'acme', true));
  await users.putUser(user(BOB, 'bob@acme.test', 'acme', true));
  await users.putUser(user(CARL, 'carl@acme.test', 'acme', false));
  await users.putUser(user(DANA, 'dana@beta.test', 'beta', true));
  await users.putUser(user(GUS, 'gus@gamma.test', 'gamma', true));
  await users.putUser(user(DORA, 'dora@delta.test', 'delta', true));
}, 60_000);

afterAll(async () => {
  await forge?.close();
  await smtp?.close();
  await slack?.close();
  await provider?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function call(method: string, path: string, body: unknown, roles: string[] = ['admin']): Promise<{ status: number; json: Record<string, unknown> }> {
  const key = (await forge!.keys.create({ name: `k-${roles.join('-')}`, roles: roles as never, tenantId: null })).key;
  const r = await fetch(`${forge!.url}${path}`, { method, headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: r.status, json: (await r.json()) as Record<string, unknown> };
}

let events = 0;
/** Finalized tasks of acme in the cost log: what the tier's executions count. */
async function executed(n: number): Promise<void> {
  const evs = Array.from({ length: n }, () => {
    events++;
    return { event_id: `bill-ev-${events}`, tenant_id: 'acme', run_id: 'r1', task_id: `t${events}`, task_type: 'eval', environment: 'cpu-standard', status: 'success', finalized_at: new Date(NOW - 60_000).toISOString(), rli_eval_usd: '2', task_hours: '0' };
  });
  const r = await call('POST', '/v1/events', { events: evs }, ['runner']);
  expect(r.status, JSON.stringify(r.json)).toBe(200);
}

let jobs = 0;
/** Starts a job; `crosses` names the percents of the tier executions its answer must carry. */
async function startJob(tenant: string, userId: string, crosses: number[] = []): Promise<string> {
  const id = `job-${++jobs}`;
  const r = await call('POST', '/v1/billing/jobs', { tenant_id: tenant, user_id: userId, execution_id: id, skill: 'classify', max_tokens: 100 }, ['runner']);
  expect(r.json, JSON.stringify(r.json)).toMatchObject({ decision: 'allow' });
  expect((r.json.alerts as Array<{ percent: number }>).map((a) => a.percent)).toEqual(crosses);
  return id;
}

const subjects = (): string[] => smtp.mails.map((m) => m.parsed.subject ?? '');

describe('billing alerts reach people through the dispatcher', () => {
  let open100 = '';

  it('50/80/100% of the tier executions go to the team\'s verified users, with value, threshold, 7-day burn, top component and a link', async () => {
    expect((await call('PUT', '/v1/billing/tenants/acme/account', { plan_id: 'free' })).status).toBe(200);
    await executed(4);
    await startJob('acme', ANN, [50]); // the 5th execution
    await smtp.waitFor(1);
    await executed(2);
    await startJob('acme', ANN, [80]); // the 8th
    await smtp.waitFor(2);
    await executed(1);
    open100 = await startJob('acme', ANN, [100]); // the 10th
    await smtp.waitFor(3);
    expect(subjects()).toEqual([
      expect.stringContaining('50% of your monthly executions'),
      expect.stringContaining('80% of your monthly executions'),
      expect.stringContaining('100% of your monthly executions'),
    ]);
    // A team-wide limit: every verified user of the tenant (Carl's email is not verified).
    for (const m of smtp.mails) expect(m.envelopeTo.sort()).toEqual(['ann@acme.test', 'bob@acme.test']);
    const text = smtp.mails[1]!.parsed.text ?? '';
    expect(text).toContain('Current value: 8');
    expect(text).toContain('Threshold: 8 (80% of 10)');
    // 6 tasks of 2 USD in the cost log this week when 80% was crossed.
    expect(text).toContain('Trailing 7-day burn: $12');
    expect(text).toMatch(/Top component: .*(RLI|evaluation)/i);
    expect(text).toContain(`var-scope=${encodeURIComponent('tenant:acme')}`);
  }, 60_000);

  it('a user\'s daily spend cap alerts that user only; a billing user without an account falls back to the configured address, logged', async () => {
    const before = smtp.mails.length;
    const id = await startJob('gamma', GUS);
    const s = await call('POST', `/v1/billing/jobs/${id}/settle`, { tenant_id: 'gamma', user_id: GUS, llm_cost_usd: '0.5' }, ['runner']);
    expect(s.status, JSON.stringify(s.json)).toBe(200);
    await smtp.waitFor(before + 1);
    const gus = smtp.mails[before]!;
    expect(gus.parsed.subject).toContain('50% of your daily spend cap');
    expect(gus.envelopeTo).toEqual(['gus@gamma.test']);
    expect(gus.parsed.text).toContain('Threshold: $0.5 (50% of $1)');

    const other = await startJob('gamma', 'u-no-account');
    await call('POST', `/v1/billing/jobs/${other}/settle`, { tenant_id: 'gamma', user_id: 'u-no-account', llm_cost_usd: '0.6' }, ['runner']);
    await smtp.waitFor(before + 2);
    expect(smtp.mails[before + 1]!.envelopeTo).toEqual(['billing-desk@example.test']);
    expect(logs.some((l) => l.includes('billing user u-no-account of tenant gamma has no account user with a verified email'))).toBe(true);
  }, 60_000);

  it('the second crossing of a threshold in the same period sends nothing, and neither does one after a restart', async () => {
    // The 10th execution cancelled (it no longer counts) and started again: 100% is crossed a second time.
    expect((await call('POST', `/v1/billing/jobs/${open100}/cancel`, { tenant_id: 'acme' }, ['runner'])).status).toBe(200);
    await startJob('acme', ANN, [100]);
    // The barrier: a new threshold (Gus reaches 80% of his daily cap) arrives after whatever the restart sent.
    const before = smtp.mails.length;
    const id = await startJob('gamma', GUS);
    await call('POST', `/v1/billing/jobs/${id}/settle`, { tenant_id: 'gamma', user_id: GUS, llm_cost_usd: '0.3' }, ['runner']);
    await smtp.waitFor(before + 1);
    expect(smtp.mails.slice(before).map((m) => m.parsed.subject)).toEqual([expect.stringContaining('80% of your daily spend cap')]);

    // Restart: the jobs open in this process are gone, 9 executions are in the log; the 10th crosses 100% again.
    await executed(2);
    await forge!.close();
    forge = await start();
    const mails = smtp.mails.length;
    await startJob('acme', ANN, [100]);
    // The barrier: Gus's 100% of his daily cap is new.
    const last = await startJob('gamma', GUS);
    await call('POST', `/v1/billing/jobs/${last}/settle`, { tenant_id: 'gamma', user_id: GUS, llm_cost_usd: '0.3' }, ['runner']);
    await smtp.waitFor(mails + 1);
    await new Promise((r) => setTimeout(r, 300));
    expect(smtp.mails.slice(mails).map((m) => m.parsed.subject)).toEqual([expect.stringContaining('100% of your daily spend cap')]);
    expect(subjects().filter((x) => x.includes('100% of your monthly executions'))).toHaveLength(1);
  }, 60_000);

  it('a failing BYOK key reaches the user\'s email and the team\'s Slack, once a day', async () => {
    expect((await call('PUT', '/v1/billing/tenants/beta/account', { plan_id: 'pro' })).status).toBe(200);
    const save = await call('PUT', `/v1/billing/tenants/beta/users/${DANA}/keys/openai`, { api_key: 'sk-user-dana-0123456789' });
    expect(save.status, JSON.stringify(save.json)).toBe(200);
    const before = smtp.mails.length;
    for (let i = 0; i < 2; i++) {
      const id = await startJob('beta', DANA);
      const s = await call('POST', `/v1/billing/jobs/${id}/settle`, { tenant_id: 'beta', user_id: DANA, llm_cost_usd: '0', key_status: 'invalid', key_detail: 'invalid_api_key' }, ['runner']);
      expect(s.json).toMatchObject({ key_alert: { status: 'invalid', severity: 'action_required' } });
    }
    await smtp.waitFor(before + 1);
    await slack.waitForCount(1);
    const mail = smtp.mails[before]!;
    expect(mail.envelopeTo).toEqual(['dana@beta.test']);
    expect(mail.parsed.subject).toContain('openai key needs replacing');
    expect(mail.parsed.text).toContain('Status: invalid');
    expect(JSON.stringify(slack.requests[0]!.json)).toContain('openai');
    expect(slack.problems()).toEqual([]);
    await new Promise((r) => setTimeout(r, 300));
    expect(smtp.mails).toHaveLength(before + 1);
    expect(slack.requests).toHaveLength(1);
  }, 60_000);

  it('Pay As You Go: the estimated monthly cost at this pace reaches 50/80/100% of the monthly cap, each once, to the team', async () => {
    expect((await call('PUT', '/v1/billing/tenants/delta/account', { plan_id: 'payg' })).status).toBe(200);
    const before = smtp.mails.length;
    // Each execution is 0.01 USD so far, 0.02 USD at this pace: 50% of 0.10 at the 3rd, 80% at the 4th, 100% at the 5th.
    await startJob('delta', DORA);
    await startJob('delta', DORA);
    for (let n = 3; n <= 5; n++) {
      await startJob('delta', DORA);
      await smtp.waitFor(before + n - 2);
    }
    await startJob('delta', DORA);
    await new Promise((r) => setTimeout(r, 300));
    const got = smtp.mails.slice(before);
    expect(got.map((m) => m.parsed.subject)).toEqual([
      expect.stringContaining('50% of your monthly budget (delta)'),
      expect.stringContaining('80% of your monthly budget (delta)'),
      expect.stringContaining('100% of your monthly budget (delta)'),
    ]);
    for (const m of got) expect(m.envelopeTo).toEqual(['dora@delta.test']);
    expect(got[0]!.parsed.text).toContain('Current value: $0.06');
    expect(got[0]!.parsed.text).toContain('Threshold: $0.05 (50% of $0.1)');
    expect(got[0]!.parsed.text).toContain('estimated monthly cost');
  }, 60_000);
});
