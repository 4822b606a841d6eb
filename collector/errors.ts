/**
 * The collector's error registry: every failure callers may branch on has a stable `code`
 * (fastify's `FST_ERR_...` pattern). Expected per-event outcomes are values (see ParseOutcome), not these.
 */
export type CollectorErrorCode =
  | 'FORGE_ERR_VALIDATION'
  | 'FORGE_ERR_FORBIDDEN_TENANT'
  | 'FORGE_ERR_EVENT_ID_CONFLICT'
  | 'FORGE_ERR_UNSUPPORTED_MEDIA_TYPE'
  | 'FORGE_ERR_PAYLOAD_TOO_LARGE'
  | 'FORGE_ERR_STORE_UNAVAILABLE'
  | 'FORGE_ERR_CHAIN_UNAVAILABLE'
  | 'FORGE_ERR_PRICE_UNAVAILABLE'
  | 'FORGE_ERR_PRICING_CONFIG'
  | 'FORGE_ERR_COLLECTOR_CLOSED';

export class CollectorError extends Error {
  constructor(
    readonly code: CollectorErrorCode,
    message: string,
    /** HTTP status the routes answer with. */
    readonly statusCode: number,
    /** Field path inside the event (snake_case, e.g. "gas.tx_hash"), when one field is at fault. */
    readonly field?: string,
  ) {
    super(message);
    this.name = 'CollectorError';
  }
}

/** The pricing file or environment is invalid; thrown once at start, naming the bad key. */
export class PricingConfigError extends CollectorError {
  constructor(message: string, field?: string) {
    super('FORGE_ERR_PRICING_CONFIG', message, 500, field);
    this.name = 'PricingConfigError';
  }
}

/**
 * A dependency needed to price an event (chain RPC, price feed, store) is unreachable. Retryable: the
 * routes answer 503 and the producer retries with the same event_id.
 */
export class UnavailableError extends CollectorError {
  constructor(code: 'FORGE_ERR_STORE_UNAVAILABLE' | 'FORGE_ERR_CHAIN_UNAVAILABLE' | 'FORGE_ERR_PRICE_UNAVAILABLE', message: string, options?: { cause?: unknown }) {
    super(code, message, 503);
    this.name = 'UnavailableError';
    if (options?.cause !== undefined) (this as { cause?: unknown }).cause = options.cause;
  }
}
