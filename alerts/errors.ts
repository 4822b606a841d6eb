/** Stable error codes of alerts/. Callers branch on `code`, never on message text. */
export const ALERTS_ERROR_CODES = {
  config: 'FORGE_ERR_ALERTS_CONFIG',
  input: 'FORGE_ERR_ALERTS_INPUT',
  delivery: 'FORGE_ERR_ALERTS_DELIVERY',
  sink: 'FORGE_ERR_ALERTS_SINK',
} as const;
export type AlertsErrorCode = (typeof ALERTS_ERROR_CODES)[keyof typeof ALERTS_ERROR_CODES];

export class AlertsError extends Error {
  constructor(
    readonly code: AlertsErrorCode,
    message: string,
    /** The offending field (dotted path) for config and input errors. */
    readonly field?: string,
  ) {
    super(field ? `${field}: ${message}` : message);
    this.name = 'AlertsError';
  }
}

/** Bad alerts configuration; the message names the field and never carries a secret value. */
export class AlertsConfigError extends AlertsError {
  constructor(field: string, message: string) {
    super(ALERTS_ERROR_CODES.config, message, field);
    this.name = 'AlertsConfigError';
  }
}

/** A state change or alert that does not have the documented shape. */
export class AlertsInputError extends AlertsError {
  constructor(field: string, message: string) {
    super(ALERTS_ERROR_CODES.input, message, field);
    this.name = 'AlertsInputError';
  }
}
