/**
 * alerts/: guardrail state changes, operational alerts and user spend alerts to Slack (incoming webhook),
 * PagerDuty (Events API v2), email (SMTP) and generic webhooks (one Channel each, alerts/channels/), with deduplication, retries, dead letters, rate limits and acknowledgement.
 * The Alertmanager path (Prometheus rules + Alertmanager config) lives in alerts/prometheus/.
 */
export { AlertDispatcher } from './dispatcher.ts';
export type { AlertDispatcherOptions, AckResult, DispatchResult, LoggedAlert, OpenWarning } from './dispatcher.ts';
export { loadAlertsConfig, parseAlertsConfig, PAGERDUTY_EVENTS_URL } from './config.ts';
export type { AlertsConfig, DestinationConfig, Env, RateLimit, RetryPolicy, RouteKey } from './config.ts';
export type { DeliveryOutcome } from './delivery.ts';
export { MemoryAlertLogSink, stderrLogger } from './log-sink.ts';
export { alertLogRow, storeAlertHistory, storeAlertLogSink } from './store-sink.ts';
export type { AlertHistory, AlertLogStore, AlertReadStore } from './store-sink.ts';
export { estimatedMonthlyMicros, monthTrend, monthWindow, SPEND_PERCENTS, spendAlertsOf, spendDedupKey } from './spend.ts';
export { monthTrendAnomalies } from './month-trend.ts';
export { projectedBreachAnomalies, projectedDayBreach } from './projection.ts';
export { ANOMALY_KINDS } from './anomaly.ts';
export { foldIncidents, incidentIdOf, IncidentLog } from './incidents.ts';
export type { Incident, IncidentStore } from './incidents.ts';
export type { AnomalyAlert, AnomalyKind } from './anomaly.ts';
export type { SpendAlert, SpendMetric, SpendSnapshot } from './spend.ts';
export type { KeyHealthNotice } from './key-health.ts';
export type { Attempt, Channel, ChannelMessage } from './channel.ts';
export type { EmailBody } from './channels/email.ts';
export type { WebhookBody } from './channels/webhook.ts';
export type { AlertLogger, AlertLogRecord, AlertLogSink, AlertLogStatus } from './log-sink.ts';
export { ALERTS_ERROR_CODES, AlertsConfigError, AlertsError, AlertsInputError } from './errors.ts';
export type { AlertsErrorCode } from './errors.ts';
export { Redactor, REDACTED, Secret } from './secret.ts';
export { systemClock } from './clock.ts';
export type { Clock, Timers } from './clock.ts';
export { formatValue } from './format.ts';
export type { PagerDutyEvent, SlackMessage, SlackVariant } from './format.ts';
export type { AlertKind, AlertView, ComponentFailureAlert, EventAction, HungTaskAlert, OperationalAlert, PagerDutySeverity } from './types.ts';
export { BillingAlertNotifier, type BillingAlertNotifierDeps, type BurnNotice, type KeyNotice } from './billing-notify.ts';
