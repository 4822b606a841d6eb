/**
 * alerts/: guardrail state changes and operational alerts to Slack (incoming webhook) and PagerDuty
 * (Events API v2), with deduplication, retries, dead letters, rate limits and acknowledgement.
 * The Alertmanager path (Prometheus rules + Alertmanager config) lives in alerts/prometheus/.
 */
export { AlertDispatcher } from './dispatcher.ts';
export type { AlertDispatcherOptions, AckResult, DispatchResult, OpenWarning } from './dispatcher.ts';
export { loadAlertsConfig, parseAlertsConfig, PAGERDUTY_EVENTS_URL } from './config.ts';
export type { AlertsConfig, DestinationConfig, Env, RateLimit, RetryPolicy, RouteKey } from './config.ts';
export type { DeliveryOutcome } from './delivery.ts';
export { MemoryAlertLogSink, stderrLogger } from './log-sink.ts';
export { storeAlertLogSink } from './store-sink.ts';
export type { AlertLogStore } from './store-sink.ts';
export type { AlertLogger, AlertLogRecord, AlertLogSink, AlertLogStatus } from './log-sink.ts';
export { ALERTS_ERROR_CODES, AlertsConfigError, AlertsError, AlertsInputError } from './errors.ts';
export type { AlertsErrorCode } from './errors.ts';
export { Redactor, REDACTED, Secret } from './secret.ts';
export { systemClock } from './clock.ts';
export type { Clock, Timers } from './clock.ts';
export { formatValue } from './format.ts';
export type { PagerDutyEvent, SlackMessage, SlackVariant } from './format.ts';
export type { AlertKind, AlertView, ComponentFailureAlert, EventAction, HungTaskAlert, OperationalAlert, PagerDutySeverity } from './types.ts';
