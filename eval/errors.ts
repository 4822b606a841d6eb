/**
 * Eval failures: one Error subclass with a stable `code` (listed once here) and the offending `field`.
 * The codes that reach HTTP are in api/errors.ts's registry, so the one error handler maps them.
 * Expected outcomes (a task that failed its rubric, a crashed agent, a denied admission) are values.
 */
export const EVAL_ERROR_CODES = {
  /** Input of the wrong shape: a name, an image reference, a suite field. */
  FORGE_ERR_VALIDATION: 'invalid input',
  /** An agent upload over a size or file-count limit. */
  FORGE_ERR_PAYLOAD_TOO_LARGE: 'agent too large',
  /** An agent ZIP that is unsafe or unusable: path escape, absolute path, symlink, no manifest, bad archive. */
  FORGE_ERR_AGENT_REJECTED: 'agent rejected',
  /** No such agent, suite or run for this tenant. */
  FORGE_ERR_NOT_FOUND: 'not found',
  /** A suite file that does not parse or check. */
  FORGE_ERR_SUITE_CONFIG: 'invalid suite file',
  /** A run id already in use: running in this process, or of another agent or suite. */
  FORGE_ERR_CONFLICT: 'conflict',
  /** Too many eval runs at once in this process: try again when one ends. */
  FORGE_ERR_RATE_LIMITED: 'too many runs',
  /** The LLM judge could not be reached or answered nonsense. */
  FORGE_ERR_JUDGE_UNAVAILABLE: 'judge unavailable',
} as const;

export type EvalErrorCode = keyof typeof EVAL_ERROR_CODES;

export class EvalError extends Error {
  readonly code: EvalErrorCode;
  /** The offending field, e.g. `bytes`, `entries[3].name`, `ref`, `tasks[2].rubric[0].path`. */
  readonly field: string | undefined;

  constructor(code: EvalErrorCode, message: string, opts: { field?: string; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'EvalError';
    this.code = code;
    this.field = opts.field;
  }
}

export function isEvalError(e: unknown, code?: EvalErrorCode): e is EvalError {
  return e instanceof EvalError && (code === undefined || e.code === code);
}
