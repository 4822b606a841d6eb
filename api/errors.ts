/**
 * The one registry of API error codes. A 4xx says what to fix (and names the field); a 5xx hides internals.
 * Callers and clients branch on `code`, never on the message.
 */
export const ERRORS = {
  FORGE_ERR_VALIDATION: 400,
  FORGE_ERR_UNAUTHENTICATED: 401,
  FORGE_ERR_FORBIDDEN_ROLE: 403,
  FORGE_ERR_FORBIDDEN_TENANT: 403,
  FORGE_ERR_NOT_FOUND: 404,
  /** A tenant Forge does not know (not in the bands file, not created with POST /v1/tenants). */
  FORGE_ERR_TENANT_NOT_FOUND: 404,
  FORGE_ERR_METHOD_NOT_ALLOWED: 405,
  FORGE_ERR_CONFLICT: 409,
  /**
   * An ingested event whose event_id the tenant already used for another event (another event time or body):
   * refused, nothing of it stored; a resend of the same event is a duplicate instead (collector/ingest.ts).
   */
  FORGE_ERR_EVENT_ID_CONFLICT: 409,
  FORGE_ERR_PAYLOAD_TOO_LARGE: 413,
  /** An agent upload that is unsafe or unusable (eval/agents.ts): path escape, symlink, no manifest, bad archive. */
  FORGE_ERR_AGENT_REJECTED: 422,
  FORGE_ERR_URI_TOO_LONG: 414,
  FORGE_ERR_UNSUPPORTED_MEDIA_TYPE: 415,
  FORGE_ERR_RATE_LIMITED: 429,
  /** The tenant's intake is paused (an execution spike): new admissions are refused until an operator resumes it. */
  FORGE_ERR_INTAKE_PAUSED: 429,
  // Accounts (accounts/errors.ts).
  FORGE_ERR_INVALID_CREDENTIALS: 401,
  FORGE_ERR_TWO_FACTOR_INVALID: 401,
  FORGE_ERR_EMAIL_UNVERIFIED: 403,
  /** A state-changing request made with a session cookie without the matching CSRF token. */
  FORGE_ERR_CSRF: 403,
  FORGE_ERR_OIDC_REJECTED: 400,
  /** Too many failed sign-ins for this email: refused until the lockout ends (even with the right password). */
  FORGE_ERR_ACCOUNT_LOCKED: 429,
  FORGE_ERR_UNAVAILABLE: 503,
  FORGE_ERR_INTERNAL: 500,
  // The collector's (collector/errors.ts): its errors carry these statuses.
  FORGE_ERR_STORE_UNAVAILABLE: 503,
  FORGE_ERR_CHAIN_UNAVAILABLE: 503,
  FORGE_ERR_PRICE_UNAVAILABLE: 503,
  FORGE_ERR_COLLECTOR_CLOSED: 503,
  // Billing (api/routes/billing.ts maps billing's own codes onto these in one place).
  FORGE_ERR_BYOK_KEY_REJECTED: 422,
  FORGE_ERR_BYOK_PROVIDER_UNREACHABLE: 502,
  FORGE_ERR_BYOK_NOT_CONFIGURED: 503,
  FORGE_ERR_STRIPE_SIGNATURE: 400,
  FORGE_ERR_STRIPE_UNAVAILABLE: 502,
  FORGE_ERR_STRIPE_NOT_CONFIGURED: 503,
} as const;

export type ErrorCode = keyof typeof ERRORS;

export class ApiError extends Error {
  readonly statusCode: number;
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly field?: string,
  ) {
    super(message);
    this.statusCode = ERRORS[code];
  }
}

export interface ErrorBody {
  error: { code: string; message: string; field?: string };
}

export const errorBodySchema = {
  type: 'object',
  required: ['error'],
  properties: {
    error: {
      type: 'object',
      required: ['code', 'message'],
      properties: { code: { type: 'string' }, message: { type: 'string' }, field: { type: 'string' } },
    },
  },
} as const;

export function notFound(what: string): ApiError {
  return new ApiError('FORGE_ERR_NOT_FOUND', `${what} not found`);
}
