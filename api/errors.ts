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
  FORGE_ERR_CONFLICT: 409,
  FORGE_ERR_UNSUPPORTED_MEDIA_TYPE: 415,
  FORGE_ERR_PAYLOAD_TOO_LARGE: 413,
  FORGE_ERR_RATE_LIMITED: 429,
  FORGE_ERR_UNAVAILABLE: 503,
  FORGE_ERR_INTERNAL: 500,
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
