import type { DestinationConfig } from './config.ts';
import type { GuardState } from '../rules/index.ts';
import type { AlertKind, EventAction, PagerDutySeverity } from './types.ts';

export type AlertLogStatus = 'delivered' | 'failed' | 'dead_letter' | 'rate_limited';

/**
 * One line of the alert log: a delivery, a failed attempt, or a give-up. Never holds a webhook URL or
 * routing key: `destination` is the configured name and `error` is redacted.
 */
export interface AlertLogRecord {
  /** Unique per record (UUID). */
  id: string;
  /** Epoch ms. */
  at: number;
  status: AlertLogStatus;
  /** Destination name from config. */
  destination: string;
  destinationType: DestinationConfig['type'];
  kind: AlertKind;
  /** critical / error / warning / info (PagerDuty's scale; WARNING is warning, HARD_STOP error, ...). */
  severity: PagerDutySeverity;
  scope: string;
  condition: string;
  state?: GuardState;
  dedupKey: string;
  eventAction: EventAction;
  /** 1-based attempt number (the last one for delivered / dead_letter). */
  attempt: number;
  /** HTTP status, or the SMTP reply code for email. */
  httpStatus?: number;
  /** Redacted error text. */
  error?: string;
  summary: string;
  /** For dead letters: the JSON body that could not be delivered (no routing key), for a manual replay. */
  payload?: string;
}

/** Where delivered, failed and dead-lettered alerts are persisted (the store's alert_log table). */
export interface AlertLogSink {
  append(record: AlertLogRecord): Promise<void>;
}

/** Keeps records in memory; for tests and the embedded default when no store is wired. */
export class MemoryAlertLogSink implements AlertLogSink {
  readonly records: AlertLogRecord[] = [];

  constructor(private readonly max = 10_000) {}

  append(record: AlertLogRecord): Promise<void> {
    this.records.push(record);
    if (this.records.length > this.max) this.records.splice(0, this.records.length - this.max);
    return Promise.resolve();
  }
}

/** Logger in pino's `(fields, message)` form, so fastify's `app.log` can be passed as is. */
export interface AlertLogger {
  info(fields: Record<string, unknown>, msg: string): void;
  warn(fields: Record<string, unknown>, msg: string): void;
  error(fields: Record<string, unknown>, msg: string): void;
}

/** JSON lines on stderr. */
export const stderrLogger: AlertLogger = {
  info: (f, m) => process.stderr.write(`${JSON.stringify({ level: 'info', msg: m, ...f })}\n`),
  warn: (f, m) => process.stderr.write(`${JSON.stringify({ level: 'warn', msg: m, ...f })}\n`),
  error: (f, m) => process.stderr.write(`${JSON.stringify({ level: 'error', msg: m, ...f })}\n`),
};
