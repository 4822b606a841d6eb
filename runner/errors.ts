/**
 * Runner failures: one Error subclass with a stable `code`, listed here once.
 * Expected outcomes (a denied admission, a halted scope, a postponed task) are values, not errors.
 */
export const RUNNER_ERROR_CODES = {
  FORGE_ERR_RUNNER_CONFIG: 'invalid runner configuration',
  FORGE_ERR_RUNNER_TASK: 'invalid task',
  FORGE_ERR_ADMISSION_UNAVAILABLE: 'admission service unavailable',
  FORGE_ERR_ADMISSION_PROTOCOL: 'unexpected admission response',
  FORGE_ERR_EVENTS_UNAVAILABLE: 'event collector unavailable',
  FORGE_ERR_EVENTS_REJECTED: 'event collector rejected the event',
  FORGE_ERR_API_KEY_REFUSED: 'the API refused the key',
  FORGE_ERR_UNKNOWN_TENANT: 'the API does not know the tenant',
  /** The tenant's intake is paused (an execution spike): admit() answers it as a deny; other calls throw it. */
  FORGE_ERR_INTAKE_PAUSED: 'the tenant\'s intake is paused',
  FORGE_ERR_SUITE_CONFIG: 'invalid suite file',
  FORGE_ERR_ALERT_UNAVAILABLE: 'the API did not take the alert',
} as const;

export type RunnerErrorCode = keyof typeof RUNNER_ERROR_CODES;

export class RunnerError extends Error {
  readonly code: RunnerErrorCode;
  /** The offending field, when the error is about one. */
  readonly field: string | undefined;

  constructor(code: RunnerErrorCode, message: string, opts: { field?: string; cause?: unknown } = {}) {
    super(`${RUNNER_ERROR_CODES[code]}: ${message}`, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'RunnerError';
    this.code = code;
    this.field = opts.field;
  }
}

export { defaultErrorHandler, type ErrorHandler } from '../guard/index.ts';
