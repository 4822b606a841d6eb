/**
 * Store errors: one registry of stable codes. Callers branch on `code` (or `instanceof StoreError`),
 * never on message text.
 */
export const STORE_ERROR_CODES = {
  /** An event (or guardrail / alert row) failed validation; `field` names the bad field. Nothing was stored. */
  INVALID: 'FORGE_ERR_STORE_INVALID',
  /** The writer's buffer stayed full for longer than the backpressure timeout. Nothing was stored. */
  BACKPRESSURE: 'FORGE_ERR_STORE_BACKPRESSURE',
  /** A flush failed after all retries; the events may or may not be stored (a replay is safe). */
  WRITE_FAILED: 'FORGE_ERR_STORE_WRITE_FAILED',
  /** write() after close(). */
  CLOSED: 'FORGE_ERR_STORE_CLOSED',
  /** Connection options or environment variables are unusable. */
  CONFIG: 'FORGE_ERR_STORE_CONFIG',
  /** A migration failed to apply. */
  MIGRATION: 'FORGE_ERR_STORE_MIGRATION',
  /** The embedded data directory is held by another process (one process owns it at a time). */
  LOCKED: 'FORGE_ERR_STORE_LOCKED',
  /** A query failed. */
  QUERY: 'FORGE_ERR_STORE_QUERY',
} as const;

export type StoreErrorCode = (typeof STORE_ERROR_CODES)[keyof typeof STORE_ERROR_CODES];

export class StoreError extends Error {
  readonly code: StoreErrorCode;
  /** For INVALID: the offending field, e.g. "events[3].tenantId". */
  readonly field?: string;

  constructor(code: StoreErrorCode, message: string, opts?: { field?: string; cause?: unknown }) {
    super(message, opts?.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'StoreError';
    this.code = code;
    if (opts?.field !== undefined) this.field = opts.field;
  }
}

export function isStoreError(e: unknown, code?: StoreErrorCode): e is StoreError {
  return e instanceof StoreError && (code === undefined || e.code === code);
}
