/**
 * Guard failures (halt bus, guardrail operations), one Error subclass with a stable `code`. The live
 * ledger's own failures are LedgerError (ledger/errors.ts). Expected outcomes (a denied admission, a
 * stale publish, a refused acknowledgement) are values or these codes, never message text.
 */
export const GUARD_ERROR_CODES = {
  FORGE_ERR_HALT_BUS_INPUT: 'invalid state change',
  FORGE_ERR_HALT_BUS_UNAVAILABLE: 'halt bus unavailable',
  FORGE_ERR_HALT_BUS_CLOSED: 'halt bus closed',
  /** An operator action that the scope's state does not allow (acknowledge a non-WARNING, lift a non-stop). */
  FORGE_ERR_CONFLICT: 'conflict',
  FORGE_ERR_NOT_FOUND: 'not found',
  FORGE_ERR_VALIDATION: 'invalid input',
  /** The control state is being rebuilt (start, or Redis came back empty): admissions wait. */
  FORGE_ERR_UNAVAILABLE: 'guard unavailable',
} as const;

export type GuardErrorCode = keyof typeof GUARD_ERROR_CODES;

export class GuardError extends Error {
  readonly code: GuardErrorCode;
  /** The offending field, when the error is about one. */
  readonly field: string | undefined;

  constructor(code: GuardErrorCode, message: string, opts: { field?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'GuardError';
    this.code = code;
    this.field = opts.field;
  }
}

/** One sink for failures of background loops (subscribers, watchdogs, reconnects, audit writes). */
export type ErrorHandler = (err: unknown, where: string) => void;

export const defaultErrorHandler: ErrorHandler = (err, where) => {
  console.error(`[forge] ${where}:`, err);
};
