import type { AlertInput } from '../store/index.ts';
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
