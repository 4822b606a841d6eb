import { redisFailureKind } from '../redis.ts';

/**
 * Live-ledger failures, one Error subclass with a stable `code`. A denied reservation is an outcome
 * (ReserveOutcome), not an error. FORGE_ERR_LEDGER_UNAVAILABLE means the shared state could not be
 * reached: admissions must fail closed on it.
 */
export const LEDGER_ERROR_CODES = {
  FORGE_ERR_LEDGER_INPUT: 'invalid ledger input',
  FORGE_ERR_LEDGER_UNAVAILABLE: 'live ledger unavailable',
  FORGE_ERR_LEDGER_INTERNAL: 'live ledger internal error',
  FORGE_ERR_LEDGER_CLOSED: 'live ledger closed',
} as const;

export type LedgerErrorCode = keyof typeof LEDGER_ERROR_CODES;

export class LedgerError extends Error {
  readonly code: LedgerErrorCode;
  /** The offending field, when the error is about one. */
  readonly field: string | undefined;

  constructor(code: LedgerErrorCode, message: string, opts: { field?: string; cause?: unknown } = {}) {
    super(`${LEDGER_ERROR_CODES[code]}: ${message}`, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'LedgerError';
    this.code = code;
    this.field = opts.field;
  }
}

export function isLedgerUnavailable(e: unknown): boolean {
  return e instanceof LedgerError && e.code === 'FORGE_ERR_LEDGER_UNAVAILABLE';
}

/**
 * Runs one Redis command of the live state (ledger or shared spend) on a fast-fail connection: a LedgerError
 * FORGE_ERR_LEDGER_UNAVAILABLE when Redis cannot be reached (admissions fail closed on it), INTERNAL when a
 * script or command is wrong.
 */
export async function onLiveRedis<T>(conn: { ensureReady(): Promise<void> }, what: string, fn: () => Promise<T>): Promise<T> {
  try {
    await conn.ensureReady();
    return await fn();
  } catch (e) {
    if (e instanceof LedgerError) throw e;
    const code = redisFailureKind(e) === 'internal' ? 'FORGE_ERR_LEDGER_INTERNAL' : 'FORGE_ERR_LEDGER_UNAVAILABLE';
    throw new LedgerError(code, `${what}: ${(e as Error).message}`, { cause: e });
  }
}
