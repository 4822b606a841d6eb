import { logScopeOf, type AlertInput, type Store } from '../store/index.ts';
import type { AlertLogRecord, AlertLogSink } from './log-sink.ts';

/** The part of the store the alert log needs (store/index.ts `Store.appendAlerts`). */
export interface AlertLogStore {
  appendAlerts(alerts: readonly AlertInput[]): Promise<void>;
}

/** Maps an alert log record to a row of the store's alert_log table. */
export function alertLogRow(rec: AlertLogRecord): AlertInput {
  return {
    // The record id makes a re-append of the same record idempotent (ReplacingMergeTree on alert_id).
    alertId: rec.id,
    at: rec.at,
    channel: `${rec.destinationType}:${rec.destination}`,
    severity: rec.severity,
    scope: rec.scope,
    dedupKey: rec.dedupKey,
    state: rec.state ?? '',
    outcome: rec.status,
    attempts: rec.attempt,
    message: rec.summary,
    details: {
      kind: rec.kind,
      condition: rec.condition,
      eventAction: rec.eventAction,
      destination: rec.destination,
      ...(rec.httpStatus !== undefined ? { httpStatus: rec.httpStatus } : {}),
      ...(rec.error !== undefined ? { error: rec.error } : {}),
      ...(rec.payload !== undefined ? { payload: rec.payload } : {}),
    },
  };
}

/** An AlertLogSink writing to the store's alert_log (records carry no secrets; see AlertLogRecord). */
export function storeAlertLogSink(store: AlertLogStore): AlertLogSink {
  return { append: (rec) => store.appendAlerts([alertLogRow(rec)]) };
}

/** What was delivered before (this process or an earlier one): alerts that must go out once survive restarts. */
export interface AlertHistory {
  /** True when `dedupKey` was delivered to `destination` (`type:name`) at or after `since` (epoch ms). */
  delivered(q: { scope: string; dedupKey: string; channel: string; since: number; now: number }): Promise<boolean>;
}

/** The part of the store AlertHistory reads (store/index.ts `Store.alerts`). */
export type AlertReadStore = Pick<Store, 'alerts'>;

/** AlertHistory over the store's alert_log (tenant-scoped query, bounded in time). */
export function storeAlertHistory(store: AlertReadStore): AlertHistory {
  return {
    async delivered(q) {
      const scope = logScopeOf(q.scope);
      if (scope === undefined) return false;
      const rows = await store.alerts({
        scope,
        scopeKey: q.scope,
        channel: q.channel,
        from: q.since,
        to: q.now + 60_000,
      });
      return rows.some((r) => r.dedupKey === q.dedupKey && r.outcome === 'delivered');
    },
  };
}
