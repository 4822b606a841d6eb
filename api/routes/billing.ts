import type { FastifyError, FastifyInstance } from 'fastify';
import type {} from '@fastify/swagger';
import { BillingError } from '../../billing/index.ts';
import { ApiError } from '../errors.ts';
import { accountRoutes } from './billing/accounts.ts';
import { creditRoutes } from './billing/credits.ts';
import { invoiceRoutes } from './billing/invoices.ts';
import { jobRoutes } from './billing/jobs.ts';
import { keyRoutes } from './billing/keys.ts';
import { billingReportRoutes } from './billing/reports.ts';
import { routeContext, type BillingRoutesOptions } from './billing/shared.ts';
import { stripeRoutes } from './billing/stripe.ts';
import { usageRoutes } from './billing/usage.ts';

export type { BillingRoutesOptions } from './billing/shared.ts';

const snake = (f: string): string => f.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/** Billing's error codes onto the API registry, in this one place. 5xx say nothing of internals. */
export function apiErrorOfBilling(e: BillingError): ApiError | BillingError {
  const field = e.field ? snake(e.field) : undefined;
  switch (e.code) {
    case 'FORGE_ERR_BILLING_INPUT':
    case 'FORGE_ERR_BILLING_UNKNOWN_PLAN':
    case 'FORGE_ERR_STRIPE_WEBHOOK_PAYLOAD':
      return new ApiError('FORGE_ERR_VALIDATION', e.message, field);
    case 'FORGE_ERR_BILLING_CONFLICT':
      return new ApiError('FORGE_ERR_CONFLICT', e.message, field);
    case 'FORGE_ERR_BILLING_NOT_FOUND':
      return new ApiError('FORGE_ERR_NOT_FOUND', e.message, field);
    case 'FORGE_ERR_VAULT_KEY_REJECTED':
      return new ApiError('FORGE_ERR_BYOK_KEY_REJECTED', 'the provider rejected the key; it was not stored', 'api_key');
    case 'FORGE_ERR_VAULT_PROVIDER_UNREACHABLE':
      return new ApiError('FORGE_ERR_BYOK_PROVIDER_UNREACHABLE', 'the provider could not be reached to validate the key; it was not stored');
    case 'FORGE_ERR_STRIPE_WEBHOOK_SIGNATURE':
      return new ApiError('FORGE_ERR_STRIPE_SIGNATURE', 'the Stripe-Signature header does not verify for this payload', 'stripe-signature');
    case 'FORGE_ERR_STRIPE_API':
      return new ApiError('FORGE_ERR_STRIPE_UNAVAILABLE', 'Stripe did not accept the call; try again shortly');
    case 'FORGE_ERR_STORE_UNAVAILABLE':
      return new ApiError('FORGE_ERR_UNAVAILABLE', 'billing storage is unreachable; try again shortly');
    default:
      return e; // a 500; the app's handler hides it and reports it
  }
}

/**
 * Billing over HTTP, one file per sub-resource under ./billing/ (accounts and plans, usage and routing,
 * jobs, credits, BYOK keys, the Stripe webhook, finance reports, invoices and usage pricing) over shared schemas (./billing/shared.ts).
 * Every route checks role and tenant; response schemas keep secrets (BYOK keys) out of every answer.
 */
export async function billingRoutes(app: FastifyInstance, opts: BillingRoutesOptions): Promise<void> {
  const ctx = routeContext(opts);
  // One mapping of billing's errors for every route here; what it throws goes on to the app's handler.
  app.setErrorHandler((err: FastifyError | Error, req) => {
    if (!(err instanceof BillingError)) throw err;
    const mapped = apiErrorOfBilling(err);
    if (mapped instanceof ApiError && mapped.statusCode >= 500) opts.onError?.(err, `${req.method} ${req.routeOptions.url ?? req.url}`);
    throw mapped;
  });
  accountRoutes(app, ctx);
  usageRoutes(app, ctx);
  jobRoutes(app, ctx);
  creditRoutes(app, ctx);
  keyRoutes(app, ctx);
  await stripeRoutes(app, ctx);
  billingReportRoutes(app, ctx);
  if (opts.usageBilling) invoiceRoutes(app, ctx, opts.usageBilling);
}
