/**
 * Accounts' expected failures. The codes are in the API's one registry (api/errors.ts), which maps each to its
 * status; `field` names what to fix. Messages never say whether an email is known.
 */
export type AccountErrorCode =
  | 'FORGE_ERR_VALIDATION'
  | 'FORGE_ERR_CONFLICT'
  | 'FORGE_ERR_NOT_FOUND'
  | 'FORGE_ERR_INVALID_CREDENTIALS'
  | 'FORGE_ERR_ACCOUNT_LOCKED'
  | 'FORGE_ERR_EMAIL_UNVERIFIED'
  | 'FORGE_ERR_TWO_FACTOR_INVALID'
  | 'FORGE_ERR_OIDC_REJECTED';

export class AccountError extends Error {
  constructor(
    readonly code: AccountErrorCode,
    message: string,
    readonly field?: string,
    /** For FORGE_ERR_ACCOUNT_LOCKED: when the lockout ends, epoch ms. */
    readonly retryAt?: number,
  ) {
    super(message);
    this.name = 'AccountError';
  }
}
