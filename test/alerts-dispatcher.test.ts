import { randomBytes, randomUUID } from 'node:crypto';
import { inspect } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import {
  AlertDispatcher,
  alertLogRow,
  MemoryAlertLogSink,
  parseAlertsConfig,
  type AlertLogger,
  type AlertLogRecord,
  type AlertLogSink,
  type Clock,
} from '../alerts/index.ts';
import type { ConditionHit, GuardState, StateChange } from '../rules/index.ts';
import { checkPagerDutyEvent, checkSlackMessage, HttpReceiver, pagerDutyOk } from './helpers/http-receiver.ts';

/** A clock whose sleep advances time at once and records the waits (backoff values, not timings). */
class ManualClock implements Clock {
  readonly sleeps: number[] = [];
  constructor(public t: number) {}
  now(): number {
    return this.t;
  }
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    this.sleeps.push(ms);
    this.t += ms;
    return Promise.resolve();
  }
  advance(ms: number): void {
    this.t += ms;
  }
}

const DAY_SOFT: ConditionHit = {
  id: 'day_soft',
  level: 'WARNING',
  metric: 'forge.cost.total.day_usd',
  unit: 'usd_micros',
  value: 850_000_000,
  threshold: 800_000_000,
  topComponent: 'gas',
};
const DAY_HARD: ConditionHit = {
  id: 'day_hard',
  level: 'HARD_STOP',
  metric: 'forge.cost.total.day_usd',
  unit: 'usd_micros',
  value: 1_020_500_000,
  threshold: 1_000_000_000,
  topComponent: 'compute',
};
const DAY_EMERGENCY: ConditionHit = {
  id: 'day_emergency',
  level: 'EMERGENCY_STOP',
  metric: 'forge.cost.total.day_usd',
  unit: 'usd_micros',
  value: 1_150_000_000,
  threshold: 1_100_000_000,
  topComponent: 'llm',
};

const T0 = Date.UTC(2025, 5, 10, 12, 0, 0);
const DAY = '2025-06-10';

function change(scope: string, previous: GuardState, state: GuardState, seq: number, holds: ConditionHit[], extra: Partial<StateChange> = {}): StateChange {
  return { scope, previous, state, seq, at: T0 + seq * 1000, reason: holds.map((h) => h.id).join(',') || 'lifted', holds, weekMicros: 4_200_500_000, ...extra };
}

const freshTenant = (): string => `tenant:t-${randomUUID().slice(0, 8)}`;

interface Rig {
  slack: HttpReceiver;
  pd: HttpReceiver;
  d: AlertDispatcher;
  clock: ManualClock;
  sink: MemoryAlertLogSink;
  logs: string[];
  errors: unknown[];
  routingKey: string;
  slackUrl: string;
}

const rigs: Rig[] = [];

async function rig(over: Record<string, unknown> = {}, opts: { sink?: AlertLogSink; slackUrl?: string } = {}): Promise<Rig> {
  const slack = await HttpReceiver.start({ check: ({ json }) => checkSlackMessage(json) });
  const routingKey = randomBytes(16).toString('hex');
  const pd = await HttpReceiver.start({ check: ({ json }) => checkPagerDutyEvent(json, routingKey), ok: pagerDutyOk });
  const slackUrl = opts.slackUrl ?? `${slack.url}/services/T0FORGE/B0ALERT/${randomBytes(12).toString('hex')}`;
  const config = parseAlertsConfig(
    {
      source: 'forge-test',
      links: {
        dashboardUrl: 'https://grafana.example.test/d/forge-burn?var-scope={scope}',
        acknowledgeUrl: 'https://forge.example.test/v1/guardrail/{scope}/acknowledge',
      },
      renotify: { intervalSeconds: 60 },
      delivery: { maxAttempts: 3, initialBackoffMs: 100, maxBackoffMs: 1000, timeoutMs: 2000 },
      destinations: {
        slack: { type: 'slack', webhookUrl: '${TEST_SLACK_URL}' },
        pd: { type: 'pagerduty', routingKey: '${TEST_PD_KEY}', url: `${pd.url}/v2/enqueue` },
      },
      routes: {
        WARNING: ['slack'],
        HARD_STOP: ['pd', 'slack'],
        EMERGENCY_STOP: ['pd', 'slack'],
        hung_task: ['slack'],
        component_failure: ['pd', 'slack'],
      },
      ...over,
    },
    { TEST_SLACK_URL: slackUrl, TEST_PD_KEY: routingKey },
  );
  const clock = new ManualClock(T0);
  const sink = new MemoryAlertLogSink();
  const logs: string[] = [];
  const errors: unknown[] = [];
  const capture =
    (level: string) =>
    (f: Record<string, unknown>, m: string): void => {
      logs.push(JSON.stringify({ level, m, ...f }));
    };
  const logger: AlertLogger = { info: capture('info'), warn: capture('warn'), error: capture('error') };
  const d = new AlertDispatcher({ config, sink: opts.sink ?? sink, logger, clock, random: () => 0.5, onError: (e) => errors.push(e) });
  const r = { slack, pd, d, clock, sink, logs, errors, routingKey, slackUrl };
  rigs.push(r);
  return r;
}

afterEach(async () => {
  for (const r of rigs.splice(0)) {
    await r.d.stop();
    await r.slack.close();
    await r.pd.close();
  }
});

const pdBodies = (r: Rig): Array<Record<string, unknown>> => r.pd.requests.map((q) => q.json as Record<string, unknown>);
const slackTexts = (r: Rig): string[] => r.slack.requests.map((q) => (q.json as { text: string }).text);

describe('alerts: routing and content', () => {
  it('a WARNING goes to Slack only, as text + blocks carrying scope, value, threshold, 7-day burn, top component and links', async () => {
    const r = await rig();
    const scope = freshTenant();
    const res = await r.d.onStateChange(change(scope, 'NORMAL', 'WARNING', 1, [DAY_SOFT]));
    expect(res).toMatchObject({ outcome: 'dispatched', dedupKeys: [`forge/${scope}/day_soft/${DAY}`] });
    expect(r.pd.requests).toHaveLength(0);
    expect(r.slack.requests).toHaveLength(1);
    expect(r.slack.problems()).toEqual([]);
    const req = r.slack.requests[0]!;
    expect(req.path).toMatch(/^\/services\/T0FORGE\/B0ALERT\//);
    const msg = req.json as { text: string; blocks: Array<Record<string, unknown>> };
    expect(msg.text).toContain(scope);
    expect(msg.text).toContain('WARNING');
    const all = JSON.stringify(msg.blocks);
    for (const want of [scope, '$850', '$800', '$4200.5', 'gas', 'day total &gt;= B_day_soft']) expect(all).toContain(want);
    const buttons = (msg.blocks.find((b) => b.type === 'actions') as { elements: Array<{ url: string; text: { text: string } }> }).elements;
    expect(buttons.map((b) => [b.text.text, b.url])).toEqual([
      ['Dashboard', `https://grafana.example.test/d/forge-burn?var-scope=${encodeURIComponent(scope)}`],
      ['Acknowledge', `https://forge.example.test/v1/guardrail/${encodeURIComponent(scope)}/acknowledge`],
    ]);
  });

  it('a HARD_STOP pages PagerDuty (v2 trigger, severity error) and posts to Slack', async () => {
    const r = await rig();
    const scope = freshTenant();
    await r.d.onStateChange(change(scope, 'WARNING', 'HARD_STOP', 2, [DAY_SOFT, DAY_HARD]));
    expect(r.pd.problems()).toEqual([]);
    expect(r.slack.problems()).toEqual([]);
    expect(r.pd.requests).toHaveLength(1);
    expect(r.slack.requests).toHaveLength(1);
    expect(r.pd.requests[0]!.path).toBe('/v2/enqueue');
    const ev = pdBodies(r)[0]!;
    expect(ev).toMatchObject({
      routing_key: r.routingKey,
      event_action: 'trigger',
      dedup_key: `forge/${scope}/day_hard/${DAY}`,
      payload: {
        source: 'forge-test',
        severity: 'error',
        component: scope,
        class: 'day_hard',
        timestamp: new Date(T0 + 2000).toISOString(),
        custom_details: {
          scope,
          state: 'HARD_STOP',
          previous: 'WARNING',
          condition: 'day_hard',
          metric: 'forge.cost.total.day_usd',
          current_value: '$1020.5',
          threshold: '$1000',
          trailing_7d_burn_usd: '4200.5',
          top_component: 'compute',
          dashboard_url: `https://grafana.example.test/d/forge-burn?var-scope=${encodeURIComponent(scope)}`,
          acknowledge_url: `https://forge.example.test/v1/guardrail/${encodeURIComponent(scope)}/acknowledge`,
        },
      },
    });
    const summary = (ev.payload as { summary: string }).summary;
    for (const want of [scope, 'HARD_STOP', '$1020.5', '$1000', '$4200.5', 'compute']) expect(summary).toContain(want);
    const conditions = (ev.payload as { custom_details: { conditions: Array<{ id: string }> } }).custom_details.conditions;
    expect(conditions.map((c) => c.id)).toEqual(['day_soft', 'day_hard']);
  });

  it('an EMERGENCY_STOP pages with severity critical under its own dedup key', async () => {
    const r = await rig();
    const scope = freshTenant();
    await r.d.onStateChange(change(scope, 'HARD_STOP', 'EMERGENCY_STOP', 3, [DAY_HARD, DAY_EMERGENCY]));
    expect(r.pd.problems()).toEqual([]);
    expect(pdBodies(r)[0]).toMatchObject({ event_action: 'trigger', dedup_key: `forge/${scope}/day_emergency/${DAY}`, payload: { severity: 'critical' } });
  });
});

describe('alerts: delivery', () => {
  it('a 500 is retried with backoff and the page is not duplicated, nor by a replayed or repeated change', async () => {
    const r = await rig();
    const scope = freshTenant();
    r.pd.failNext(1);
    const res = await r.d.onStateChange(change(scope, 'WARNING', 'HARD_STOP', 5, [DAY_HARD]));
    expect(res.outcome === 'dispatched' && res.deliveries.find((x) => x.destination === 'pd')).toMatchObject({ status: 'delivered', attempts: 2 });
    expect(r.pd.requests.map((q) => q.status)).toEqual([500, 202]);
    expect(r.pd.requests[0]!.body).toBe(r.pd.requests[1]!.body); // the retry is the same event, same dedup_key
    expect(r.clock.sleeps).toEqual([100]);
    // Replay of the same change (same seq): ignored. A later change to the same stop: same dedup key, no new page.
    expect(await r.d.onStateChange(change(scope, 'WARNING', 'HARD_STOP', 5, [DAY_HARD]))).toEqual({ outcome: 'ignored', reason: 'stale_seq' });
    const again = await r.d.onStateChange(change(scope, 'HARD_STOP', 'HARD_STOP', 6, [DAY_HARD]));
    expect(again.outcome === 'dispatched' && again.deliveries.find((x) => x.destination === 'pd')).toEqual({ status: 'duplicate', destination: 'pd' });
    expect(r.pd.accepted().filter((q) => (q.json as { event_action: string }).event_action === 'trigger')).toHaveLength(1);
    expect(r.pd.problems()).toEqual([]);
    const pdRecords = r.sink.records.filter((x) => x.destination === 'pd');
    expect(pdRecords.map((x) => [x.status, x.attempt, x.httpStatus])).toEqual([
      ['failed', 1, 500],
      ['delivered', 2, 202],
    ]);
  });

  it('a lift resolves the page with the same dedup key and tells Slack who lifted it', async () => {
    const r = await rig();
    const scope = freshTenant();
    await r.d.onStateChange(change(scope, 'WARNING', 'HARD_STOP', 1, [DAY_HARD]));
    await r.d.onStateChange(change(scope, 'HARD_STOP', 'EMERGENCY_STOP', 2, [DAY_HARD, DAY_EMERGENCY]));
    expect(r.d.openIncidents().map((i) => i.condition).sort()).toEqual(['day_emergency', 'day_hard']);
    await r.d.onStateChange(change(scope, 'EMERGENCY_STOP', 'NORMAL', 3, [], { actor: 'oncall@example.com', reason: 'lifted by operator' }));
    const evs = pdBodies(r).map((e) => [e.event_action, e.dedup_key]);
    expect(evs.slice(0, 2)).toEqual([
      ['trigger', `forge/${scope}/day_hard/${DAY}`],
      ['trigger', `forge/${scope}/day_emergency/${DAY}`],
    ]);
    expect(evs.slice(2).sort()).toEqual([
      ['resolve', `forge/${scope}/day_emergency/${DAY}`],
      ['resolve', `forge/${scope}/day_hard/${DAY}`],
    ]);
    expect(r.pd.problems()).toEqual([]);
    expect(r.d.openIncidents()).toEqual([]);
    const lifted = slackTexts(r).at(-1)!;
    expect(lifted).toContain('Lifted');
    expect(lifted).toContain('oncall@example.com');
    expect(r.slack.problems()).toEqual([]);
  });

  it("a restarted dispatcher takes over an earlier life's pages from the audited changes, sends nothing, and the lift resolves both", async () => {
    const r = await rig();
    const scope = freshTenant();
    const lifted = freshTenant();
    // Escalated, then acknowledged (the pages stay open, acknowledged); another scope stopped and lifted since.
    r.d.adoptOpenPages([
      change(scope, 'HARD_STOP', 'EMERGENCY_STOP', 2, [DAY_HARD, DAY_EMERGENCY]),
      change(scope, 'WARNING', 'HARD_STOP', 1, [DAY_HARD]),
      change(scope, 'EMERGENCY_STOP', 'EMERGENCY_STOP', 3, [DAY_HARD, DAY_EMERGENCY], { kind: 'acknowledgement', actor: 'ann' }),
      change(lifted, 'WARNING', 'HARD_STOP', 1, [DAY_HARD]),
      change(lifted, 'HARD_STOP', 'NORMAL', 2, [], { kind: 'lift', actor: 'ann' }),
    ]);
    expect(r.pd.requests).toHaveLength(0);
    expect(r.d.openIncidents().map((i) => [i.scope, i.condition, i.acknowledged]).sort()).toEqual([
      [scope, 'day_emergency', true],
      [scope, 'day_hard', true],
    ]);
    // A replayed older change is stale; the lift resolves both pages under the keys they were opened with.
    expect(await r.d.onStateChange(change(scope, 'WARNING', 'HARD_STOP', 1, [DAY_HARD]))).toMatchObject({ outcome: 'ignored' });
    await r.d.onStateChange(change(scope, 'EMERGENCY_STOP', 'NORMAL', 4, [], { actor: 'oncall@example.com', reason: 'lifted by operator' }));
    expect(pdBodies(r).map((e) => [e.event_action, e.dedup_key]).sort()).toEqual([
      ['resolve', `forge/${scope}/day_emergency/${DAY}`],
      ['resolve', `forge/${scope}/day_hard/${DAY}`],
    ]);
    expect(r.d.openIncidents()).toEqual([]);
    expect(r.pd.problems()).toEqual([]);
  });

  it('a lift that leaves the scope in WARNING counts as acknowledged by the lifter: no warning reminders', async () => {
    const r = await rig();
    const scope = freshTenant();
    await r.d.onStateChange(change(scope, 'WARNING', 'HARD_STOP', 1, [DAY_SOFT, DAY_HARD]));
    await r.d.onStateChange(change(scope, 'HARD_STOP', 'WARNING', 2, [DAY_SOFT, DAY_HARD], { actor: 'erin' }));
    expect(pdBodies(r).map((e) => e.event_action)).toEqual(['trigger', 'resolve']);
    expect(slackTexts(r)).toHaveLength(2); // the stop, then the lift note
    expect(slackTexts(r)[1]).toContain('lifted by erin');
    r.clock.advance(10 * 60_000);
    await r.d.tick();
    expect(slackTexts(r)).toHaveLength(2);
    expect(r.d.openWarnings()).toMatchObject([{ scope, active: true, acknowledged: { actor: 'erin' } }]);
  });

  it('a resolve waits for its trigger that is still retrying (per-scope order)', async () => {
    const r = await rig({ delivery: { maxAttempts: 4, initialBackoffMs: 20, maxBackoffMs: 40, timeoutMs: 2000 } });
    const scope = freshTenant();
    r.pd.failNext(2);
    const a = r.d.onStateChange(change(scope, 'WARNING', 'HARD_STOP', 1, [DAY_HARD]));
    const b = r.d.onStateChange(change(scope, 'HARD_STOP', 'NORMAL', 2, [], { actor: 'ops' }));
    await Promise.all([a, b]);
    expect(r.pd.requests.map((q) => [(q.json as { event_action: string }).event_action, q.status])).toEqual([
      ['trigger', 500],
      ['trigger', 500],
      ['trigger', 202],
      ['resolve', 202],
    ]);
  });

  it('a destination that keeps failing gets a dead-letter record (without the routing key); a permanent 4xx is not retried', async () => {
    const r = await rig();
    const scope = freshTenant();
    r.pd.failNext(10);
    const res = await r.d.onStateChange(change(scope, 'WARNING', 'HARD_STOP', 1, [DAY_HARD]));
    expect(res.outcome === 'dispatched' && res.deliveries.find((x) => x.destination === 'pd')).toMatchObject({ status: 'dead_letter', attempts: 3, httpStatus: 500 });
    expect(r.pd.requests).toHaveLength(3);
    expect(r.clock.sleeps).toEqual([100, 200]);
    const dl = r.d.deadLetters();
    expect(dl).toHaveLength(1);
    expect(dl[0]).toMatchObject({ status: 'dead_letter', destination: 'pd', dedupKey: `forge/${scope}/day_hard/${DAY}`, eventAction: 'trigger', attempt: 3 });
    expect(r.sink.records.filter((x) => x.status === 'dead_letter')).toHaveLength(1);
    expect(dl[0]!.payload).toContain('"event_action":"trigger"');
    expect(dl[0]!.payload).not.toContain(r.routingKey);
    // Slack still got its message.
    expect(r.slack.accepted()).toHaveLength(1);

    const r2 = await rig();
    r2.pd.failNext(1, 400);
    const res2 = await r2.d.onStateChange(change(freshTenant(), 'WARNING', 'HARD_STOP', 1, [DAY_HARD]));
    expect(res2.outcome === 'dispatched' && res2.deliveries.find((x) => x.destination === 'pd')).toMatchObject({ status: 'dead_letter', attempts: 1, httpStatus: 400 });
    expect(r2.pd.requests).toHaveLength(1);
  });

  it('rate limit per destination: past the burst an alert is recorded rate_limited; tokens refill with time', async () => {
    const r = await rig({ rateLimit: { burst: 2, perMinute: 1, maxWaitMs: 0 } });
    const scopes = [freshTenant(), freshTenant(), freshTenant()];
    const outs = [];
    for (const s of scopes) outs.push(await r.d.onStateChange(change(s, 'NORMAL', 'WARNING', 1, [DAY_SOFT])));
    expect(outs.map((o) => (o.outcome === 'dispatched' ? o.deliveries[0]?.status : o.outcome))).toEqual(['delivered', 'delivered', 'rate_limited']);
    expect(r.slack.requests).toHaveLength(2);
    expect(r.d.deadLetters().map((x) => x.status)).toEqual(['rate_limited']);
    r.clock.advance(60_000);
    const later = await r.d.onStateChange(change(freshTenant(), 'NORMAL', 'WARNING', 1, [DAY_SOFT]));
    expect(later.outcome === 'dispatched' && later.deliveries[0]?.status).toBe('delivered');
    expect(r.slack.requests).toHaveLength(3);
  });

  it('a rate-limited alert within maxWaitMs waits for its token instead of being dropped', async () => {
    const r = await rig({ rateLimit: { burst: 1, perMinute: 60, maxWaitMs: 5000 } });
    await r.d.onStateChange(change(freshTenant(), 'NORMAL', 'WARNING', 1, [DAY_SOFT]));
    const second = await r.d.onStateChange(change(freshTenant(), 'NORMAL', 'WARNING', 1, [DAY_SOFT]));
    expect(second.outcome === 'dispatched' && second.deliveries[0]?.status).toBe('delivered');
    expect(r.clock.sleeps).toEqual([1000]);
    expect(r.slack.requests).toHaveLength(2);
  });
});

describe('alerts: acknowledgement', () => {
  it('an unacknowledged warning re-notifies every interval until acknowledged', async () => {
    const r = await rig();
    const scope = freshTenant();
    await r.d.onStateChange(change(scope, 'NORMAL', 'WARNING', 1, [DAY_SOFT]));
    await r.d.tick();
    expect(r.slack.requests).toHaveLength(1); // not due yet
    r.clock.advance(60_000);
    await r.d.tick();
    r.clock.advance(60_000);
    await r.d.tick();
    expect(slackTexts(r)).toHaveLength(3);
    expect(slackTexts(r)[1]).toContain('Reminder 1');
    expect(slackTexts(r)[2]).toContain('Reminder 2');
    const ack = await r.d.acknowledge(scope, 'alice@example.com');
    expect(ack).toMatchObject({ acknowledged: true, scope, actor: 'alice@example.com', dedupKeys: [`forge/${scope}/day_soft/${DAY}`] });
    await r.d.whenIdle();
    expect(slackTexts(r)[3]).toContain('alice@example.com acknowledged');
    for (let i = 0; i < 3; i++) {
      r.clock.advance(60_000);
      await r.d.tick();
    }
    expect(r.slack.requests).toHaveLength(4);
    expect(r.slack.problems()).toEqual([]);
    expect(await r.d.acknowledge(scope, 'bob')).toEqual({ acknowledged: false, scope, reason: 'already_acknowledged', by: 'alice@example.com' });
    expect(await r.d.acknowledge(freshTenant(), 'bob')).toMatchObject({ acknowledged: false, reason: 'nothing_to_acknowledge' });
    // The same warning again the same day (after NORMAL) does not notify again: one incident per key and day.
    await r.d.onStateChange(change(scope, 'WARNING', 'NORMAL', 2, []));
    await r.d.onStateChange(change(scope, 'NORMAL', 'WARNING', 3, [DAY_SOFT]));
    expect(r.slack.requests).toHaveLength(4);
  });

  it('the re-notify loop runs on its own timer and stops reminding after acknowledge', async () => {
    const r = await rig({ renotify: { intervalSeconds: 0.04, checkEverySeconds: 0.01 } });
    // Real timers and clock for the loop; the rig's manual clock is not used by this dispatcher.
    const config = parseAlertsConfig(
      {
        links: { dashboardUrl: 'https://g.example.test/d', acknowledgeUrl: 'https://f.example.test/ack/{scope}' },
        renotify: { intervalSeconds: 0.04, checkEverySeconds: 0.01 },
        destinations: { slack: { type: 'slack', webhookUrl: '${U}' } },
        routes: { WARNING: ['slack'] },
      },
      { U: r.slackUrl },
    );
    const errors: unknown[] = [];
    const d = new AlertDispatcher({ config, logger: { info: () => {}, warn: () => {}, error: () => {} }, onError: (e) => errors.push(e) });
    const scope = freshTenant();
    try {
      d.start();
      await d.onStateChange({ ...change(scope, 'NORMAL', 'WARNING', 1, [DAY_SOFT]), at: Date.now() });
      await r.slack.waitForCount(3); // the warning and two reminders
      await d.acknowledge(scope, 'carol');
      await d.whenIdle();
      const n = r.slack.requests.length;
      expect(slackTexts(r).at(-1)).toContain('carol acknowledged');
      await new Promise((res) => setTimeout(res, 150)); // several intervals: no reminder may follow the ack
      expect(r.slack.requests).toHaveLength(n);
      expect(errors).toEqual([]);
    } finally {
      await d.stop();
    }
  });

  it('acknowledging a stopped scope sends PagerDuty acknowledge for its open page', async () => {
    const r = await rig();
    const scope = freshTenant();
    await r.d.onStateChange(change(scope, 'WARNING', 'HARD_STOP', 1, [DAY_HARD]));
    const ack = await r.d.acknowledge(scope, 'dave');
    expect(ack.acknowledged).toBe(true);
    await r.d.whenIdle();
    expect(pdBodies(r).map((e) => [e.event_action, e.dedup_key])).toEqual([
      ['trigger', `forge/${scope}/day_hard/${DAY}`],
      ['acknowledge', `forge/${scope}/day_hard/${DAY}`],
    ]);
    expect(r.pd.problems()).toEqual([]);
  });
});

describe('alerts: other kinds, bad input, secrets', () => {
  it('hung tasks go to Slack once per task and day; component failures page and resolve', async () => {
    const r = await rig();
    const tenant = `t-${randomUUID().slice(0, 8)}`;
    const hung = { kind: 'hung_task' as const, tenantId: tenant, runId: 'run-1', taskId: 'task-9', silentForMs: 900_000 };
    await r.d.raise(hung);
    await r.d.raise({ ...hung, silentForMs: 1_200_000 });
    expect(r.slack.requests).toHaveLength(1);
    expect(slackTexts(r)[0]).toContain('task-9');
    expect(JSON.stringify(r.slack.requests[0]!.json)).toContain(`run:${tenant}/run-1`);
    expect(r.pd.requests).toHaveLength(0);

    const res = await r.d.raise({ kind: 'component_failure', component: 'collector', error: new Error('clickhouse insert timed out') });
    expect(res).toMatchObject({ outcome: 'dispatched', dedupKeys: [`forge/global/component_failure:collector/${DAY}`] });
    await r.d.resolveAlert({ kind: 'component_failure', component: 'collector' });
    expect(pdBodies(r).map((e) => e.event_action)).toEqual(['trigger', 'resolve']);
    expect(pdBodies(r)[0]).toMatchObject({ payload: { severity: 'error', custom_details: { component: 'collector' } } });
    expect((pdBodies(r)[0]!.payload as { summary: string }).summary).toContain('clickhouse insert timed out');
    expect(r.pd.problems()).toEqual([]);
    expect(r.slack.problems()).toEqual([]);
  });

  it("a restarted dispatcher takes over an earlier life's open operational pages from the alert log, sends nothing, and resolves them by their keys", async () => {
    const routes = { hung_task: ['pd', 'slack'], component_failure: ['pd'] };
    const before = await rig({ routes });
    const tenant = `t-${randomUUID().slice(0, 8)}`;
    const hung = { kind: 'hung_task' as const, tenantId: tenant, runId: 'run-1', taskId: 'task-9', silentForMs: 900_000 };
    // Paged in the earlier life: a hung task, a failing collector (acknowledged), a failing store (resolved);
    // a hung task of three days ago is past the window.
    await before.d.raise({ ...hung, taskId: 'old-task', at: T0 - 3 * 86_400_000 });
    before.clock.advance(1000);
    await before.d.raise(hung);
    await before.d.raise({ kind: 'component_failure', component: 'collector', error: 'insert timed out' });
    await before.d.raise({ kind: 'component_failure', component: 'store', error: 'disk full' });
    await before.d.acknowledge('global', 'ann');
    await before.d.whenIdle();
    await before.d.resolveAlert({ kind: 'component_failure', component: 'store' });
    // A failing API whose page never got through (PagerDuty answered 500 to every attempt): taken over
    // (it may have reached PagerDuty) but not counted as sent.
    before.pd.failNext(3);
    await before.d.raise({ kind: 'component_failure', component: 'api', error: 'handler threw' });
    const logged = before.sink.records.map((rec) => ({ ...alertLogRow(rec), dedupKey: rec.dedupKey }));
    // The old page's records are stamped three days back, as its life would have.
    for (const r of logged) if (r.dedupKey.includes('old-task')) r.at = T0 - 3 * 86_400_000;

    const after = await rig({ routes });
    after.clock.t = before.clock.t;
    after.d.adoptLoggedPages(logged);
    expect(after.d.openIncidents().map((i) => [i.dedupKey, i.acknowledged]).sort()).toEqual([
      [`forge/global/component_failure:api/${DAY}`, false],
      [`forge/global/component_failure:collector/${DAY}`, true],
      [`forge/run:${tenant}/run-1/hung_task:task-9/${DAY}`, false],
    ]);
    // The API fails again: its page is sent (PagerDuty may never have had it), under the same key.
    expect(await after.d.raise({ kind: 'component_failure', component: 'api', error: 'handler threw' })).toMatchObject({ deliveries: [{ status: 'delivered' }] });
    // A repeated report of the same hung task is not sent again (neither paged nor told on Slack).
    expect(await after.d.raise(hung)).toMatchObject({ outcome: 'dispatched', deliveries: [{ status: 'duplicate' }, { status: 'duplicate' }] });
    // The task's end and the collector's recovery resolve the pages under the keys they were opened with.
    after.d.tasksEnded([{ tenantId: tenant, runId: 'run-1', taskId: 'task-9' }, { tenantId: tenant, runId: 'run-1', taskId: 'never-hung' }]);
    await after.d.resolveAlert({ kind: 'component_failure', component: 'collector' });
    await after.d.resolveAlert({ kind: 'component_failure', component: 'api' });
    await after.d.whenIdle();
    expect(pdBodies(after).map((e) => [e.event_action, e.dedup_key]).sort()).toEqual([
      ['resolve', `forge/global/component_failure:api/${DAY}`],
      ['resolve', `forge/global/component_failure:collector/${DAY}`],
      ['resolve', `forge/run:${tenant}/run-1/hung_task:task-9/${DAY}`],
      ['trigger', `forge/global/component_failure:api/${DAY}`],
    ]);
    expect(after.slack.requests).toHaveLength(0);
    expect(after.d.openIncidents()).toEqual([]);
    expect(after.pd.problems()).toEqual([]);
  });

  it('bad input names the field, reaches onError and sends nothing', async () => {
    const r = await rig();
    const res = await r.d.onStateChange({ ...change('tenant:x', 'NORMAL', 'WARNING', 1, [DAY_SOFT]), scope: 'nope' });
    expect(res.outcome).toBe('invalid');
    expect(res.outcome === 'invalid' && res.error.field).toBe('stateChange.scope');
    expect(res.outcome === 'invalid' && res.error.code).toBe('FORGE_ERR_ALERTS_INPUT');
    const res2 = await r.d.raise({ kind: 'hung_task', tenantId: 't', runId: 'r', taskId: 'x', silentForMs: -1 });
    expect(res2.outcome === 'invalid' && res2.error.field).toBe('alert.silentForMs');
    await expect(r.d.acknowledge('tenant:x', '')).rejects.toMatchObject({ code: 'FORGE_ERR_ALERTS_INPUT', field: 'actor' });
    expect(r.errors).toHaveLength(2);
    expect(r.slack.requests.length + r.pd.requests.length).toBe(0);
  });

  it('a failing alert log sink reaches onError and does not stop delivery', async () => {
    const failing: AlertLogSink = { append: (_rec: AlertLogRecord) => Promise.reject(new Error('alert_log unavailable')) };
    const r = await rig({}, { sink: failing });
    const res = await r.d.onStateChange(change(freshTenant(), 'NORMAL', 'WARNING', 1, [DAY_SOFT]));
    expect(res.outcome === 'dispatched' && res.deliveries[0]?.status).toBe('delivered');
    expect(r.errors.map((e) => (e as { code: string }).code)).toEqual(['FORGE_ERR_ALERTS_SINK']);
  });

  it('webhook URLs and routing keys never appear in logs, records, errors, or the dispatcher/config printed', async () => {
    // Slack URL on a port where nothing listens: connection errors; PagerDuty answers 500 then 400.
    const closed = await HttpReceiver.start();
    const deadUrl = `${closed.url}/services/T0FORGE/B0DEAD/${randomBytes(12).toString('hex')}`;
    await closed.close();
    const r = await rig({}, { slackUrl: deadUrl });
    r.pd.failNext(1, 500);
    // An error body that echoes the routing key, as some gateways do.
    r.pd.failNext(1, 400, `{"status":"invalid event","errors":["routing_key ${r.routingKey} not found"]}`);
    const scope = freshTenant();
    await r.d.onStateChange(change(scope, 'WARNING', 'HARD_STOP', 1, [DAY_HARD]));
    await r.d.raise({ kind: 'component_failure', component: 'api', error: new Error(`upstream ${deadUrl} refused; key ${r.routingKey}`) });
    await r.d.whenIdle();
    // The secret was used: PagerDuty got the routing key.
    expect((r.pd.requests[0]!.json as { routing_key: string }).routing_key).toBe(r.routingKey);
    expect(r.logs.some((l) => l.includes('dead-lettered'))).toBe(true);
    expect(r.sink.records.some((x) => x.destination === 'slack' && x.status === 'dead_letter')).toBe(true);

    const secretPath = new URL(deadUrl).pathname;
    const surfaces = [
      ...r.logs,
      JSON.stringify(r.sink.records),
      JSON.stringify(r.d),
      inspect(r.d, { depth: 10 }),
      JSON.stringify(r.d.describe()),
      JSON.stringify(r.d.deadLetters()),
      // The component-failure page carries the error text, redacted.
      ...r.pd.requests.map((q) => JSON.stringify((q.json as { payload?: unknown }).payload ?? null)),
    ];
    for (const s of surfaces) {
      expect(s).not.toContain(r.routingKey);
      expect(s).not.toContain(secretPath);
    }
    const config = parseAlertsConfig(
      { links: { dashboardUrl: 'https://g.example.test', acknowledgeUrl: 'https://a.example.test' }, destinations: { s: { type: 'slack', webhookUrl: '${S}' }, p: { type: 'pagerduty', routingKey: '${P}' } }, routes: {} },
      { S: deadUrl, P: r.routingKey },
    );
    for (const s of [JSON.stringify(config, (_k, v: unknown) => (v instanceof Map ? Object.fromEntries(v) : v)), inspect(config, { depth: 10 }), String(config.secrets[0])]) {
      expect(s).not.toContain(r.routingKey);
      expect(s).not.toContain(secretPath);
    }
    expect(r.logs.join('\n')).toContain('routing_key [REDACTED] not found');
    expect(JSON.stringify(r.pd.requests.at(-1)!.json)).toContain('upstream [REDACTED] refused; key [REDACTED]');
  });
});
