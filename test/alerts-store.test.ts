import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AlertDispatcher, parseAlertsConfig, storeAlertLogSink } from '../alerts/index.ts';
import { openStore, type Store } from '../store/index.ts';
import { checkPagerDutyEvent, checkSlackMessage, HttpReceiver, pagerDutyOk } from './helpers/http-receiver.ts';

// The alert log persisted in the real store (embedded ClickHouse via chdb): alert_log rows for a failed
// attempt, the delivery, and a dead letter, with no secret in any of them.
let dir: string;
let store: Store;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'forge-alerts-store-'));
  store = await openStore({ dataDir: dir });
});

afterAll(async () => {
  await store?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('alerts: alert_log in the store', () => {
  it('records failed attempts, deliveries and dead letters per destination', async () => {
    const slack = await HttpReceiver.start({ check: ({ json }) => checkSlackMessage(json) });
    const routingKey = randomBytes(16).toString('hex');
    const pd = await HttpReceiver.start({ check: ({ json }) => checkPagerDutyEvent(json, routingKey), ok: pagerDutyOk });
    const slackUrl = `${slack.url}/services/T0/B0/${randomBytes(10).toString('hex')}`;
    const config = parseAlertsConfig(
      {
        links: { dashboardUrl: 'https://g.example.test/d?scope={scope}', acknowledgeUrl: 'https://f.example.test/ack/{scope}' },
        delivery: { maxAttempts: 2, initialBackoffMs: 1, maxBackoffMs: 2, timeoutMs: 2000 },
        destinations: { 'slack-oncall': { type: 'slack', webhookUrl: '${S}' }, 'pd-oncall': { type: 'pagerduty', routingKey: '${P}', url: `${pd.url}/v2/enqueue` } },
        routes: { WARNING: ['slack-oncall'], HARD_STOP: ['pd-oncall', 'slack-oncall'], component_failure: ['pd-oncall'] },
      },
      { S: slackUrl, P: routingKey },
    );
    const errors: unknown[] = [];
    const d = new AlertDispatcher({ config, sink: storeAlertLogSink(store), logger: { info: () => {}, warn: () => {}, error: () => {} }, onError: (e) => errors.push(e) });
    const tenant = `t-${randomUUID().slice(0, 8)}`;
    const scope = `tenant:${tenant}`;
    const at = Date.parse('2026-03-02T12:00:00Z');
    try {
      pd.failNext(1);
      await d.onStateChange({
        scope,
        previous: 'WARNING',
        state: 'HARD_STOP',
        seq: 1,
        at,
        reason: 'day_hard',
        holds: [{ id: 'day_hard', level: 'HARD_STOP', metric: 'forge.cost.total.day_usd', unit: 'usd_micros', value: 1_000_000_000, threshold: 1_000_000_000, topComponent: 'gas' }],
        weekMicros: 3_000_000_000,
      });
      pd.failNext(2);
      await d.raise({ kind: 'component_failure', component: 'store', error: 'insert failed', at });
      await d.whenIdle();
      expect(errors).toEqual([]);

      const rows = await store.alerts({ scope: { tenantId: tenant }, from: at - 60_000, to: Date.now() + 60_000 });
      expect(rows.map((r) => [r.channel, r.outcome, r.attempts, r.severity, r.state]).sort()).toEqual([
        ['pagerduty:pd-oncall', 'delivered', 2, 'error', 'HARD_STOP'],
        ['pagerduty:pd-oncall', 'failed', 1, 'error', 'HARD_STOP'],
        ['slack:slack-oncall', 'delivered', 1, 'error', 'HARD_STOP'],
      ]);
      for (const r of rows) {
        expect(r.dedupKey).toBe(`forge/${scope}/day_hard/2026-03-02`);
        expect(r.message).toContain('$1000');
      }
      // The component failure is global: its dead letter is in the global scope.
      const global = await store.alerts({ scope: { allTenants: true }, from: at - 60_000, to: Date.now() + 60_000, scopeKey: 'global' });
      const dead = global.filter((r) => r.dedupKey === 'forge/global/component_failure:store/2026-03-02' && r.outcome === 'dead_letter');
      expect(dead).toHaveLength(1);
      expect((dead[0]!.details as { payload: string }).payload).toContain('"event_action":"trigger"');
      const all = JSON.stringify([...rows, ...global]);
      expect(all).not.toContain(routingKey);
      expect(all).not.toContain(new URL(slackUrl).pathname);
    } finally {
      await d.stop();
      await slack.close();
      await pd.close();
    }
  });
});
