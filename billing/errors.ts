/**
 * Billing failures: one Error subclass with a stable `code`, listed here once.
 * Expected outcomes (limit reached, insufficient credits, halted) are returned as values, not thrown.
 */
export const BILLING_ERROR_CODES = {
  FORGE_ERR_BILLING_CONFIG: 'invalid billing configuration',
  FORGE_ERR_BILLING_INPUT: 'invalid input',
  FORGE_ERR_BILLING_UNKNOWN_PLAN: 'unknown plan',
  FORGE_ERR_BILLING_CONFLICT: 'conflicts with the account\'s state',
  FORGE_ERR_BILLING_NOT_FOUND: 'not found',
  FORGE_ERR_BILLING_LEDGER: 'credit ledger failure',
  FORGE_ERR_BILLING_LEDGER_UNBALANCED: 'ledger transaction does not sum to zero',
  FORGE_ERR_VAULT_CONFIG: 'invalid vault configuration',
  FORGE_ERR_VAULT_DECRYPT: 'ciphertext could not be authenticated',
  FORGE_ERR_VAULT_UNKNOWN_KEY_ID: 'ciphertext was sealed under a master key that is not configured',
  FORGE_ERR_VAULT_KEY_REJECTED: 'the provider rejected the key',
  FORGE_ERR_VAULT_PROVIDER_UNREACHABLE: 'the provider could not be reached to validate the key',
  FORGE_ERR_STRIPE_WEBHOOK_SIGNATURE: 'webhook signature verification failed',
  FORGE_ERR_STRIPE_WEBHOOK_PAYLOAD: 'webhook payload not understood',
  FORGE_ERR_STRIPE_API: 'Stripe API call failed',
  FORGE_ERR_STORE_UNAVAILABLE: 'billing storage unavailable',
} as const;

export type BillingErrorCode = keyof typeof BILLING_ERROR_CODES;

export class BillingError extends Error {
  readonly code: BillingErrorCode;
  /** HTTP status the api shell should answer with. */
  readonly statusCode: number;
  /** The offending field, when the error is about one. */
  readonly field: string | undefined;

  constructor(code: BillingErrorCode, message: string, opts: { statusCode?: number; field?: string; cause?: unknown } = {}) {
    super(`${BILLING_ERROR_CODES[code]}: ${message}`, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'BillingError';
    this.code = code;
    this.statusCode = opts.statusCode ?? defaultStatus(code);
    this.field = opts.field;
  }
}

function defaultStatus(code: BillingErrorCode): number {
  switch (code) {
    case 'FORGE_ERR_BILLING_INPUT':
    case 'FORGE_ERR_STRIPE_WEBHOOK_PAYLOAD':
    case 'FORGE_ERR_VAULT_KEY_REJECTED':
      return 400;
    case 'FORGE_ERR_STRIPE_WEBHOOK_SIGNATURE':
      return 400;
    case 'FORGE_ERR_BILLING_UNKNOWN_PLAN':
    case 'FORGE_ERR_BILLING_NOT_FOUND':
      return 404;
    case 'FORGE_ERR_BILLING_CONFLICT':
      return 409;
    case 'FORGE_ERR_VAULT_PROVIDER_UNREACHABLE':
    case 'FORGE_ERR_STRIPE_API':
      return 502;
    case 'FORGE_ERR_STORE_UNAVAILABLE':
      return 503;
    default:
      return 500;
  }
}
