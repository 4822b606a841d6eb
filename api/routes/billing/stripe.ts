import type { FastifyInstance } from 'fastify';
import { errorBodySchema } from '../../errors.ts';
import { e5, type BillingRouteContext } from './shared.ts';

/** The Stripe webhook: raw body, the signature is the auth. */
export async function stripeRoutes(app: FastifyInstance, ctx: BillingRouteContext): Promise<void> {
  await app.register(async (hook) => {
    // The signature covers the exact bytes Stripe sent: keep the body raw in this scope only.
    hook.removeAllContentTypeParsers();
    hook.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body));
    hook.post(
      '/v1/billing/stripe/webhook',
      {
        config: { public: true },
        schema: {
          tags: ['billing'],
          summary: 'Stripe webhooks (invoice.payment_succeeded, invoice.payment_failed, customer.subscription.updated, checkout.session.completed), verified with the Stripe-Signature header',
          security: [],
          response: { 200: { type: 'object', properties: { received: { type: 'boolean' }, handled: { type: 'boolean' }, type: { type: 'string' }, reason: { type: 'string' } } }, 400: errorBodySchema, ...e5 },
        },
      },
      async (req) => {
        const stripe = ctx.needStripe();
        const raw = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
        const sig = req.headers['stripe-signature'];
        const out = await stripe.handleWebhook(raw, typeof sig === 'string' ? sig : undefined, ctx.now());
        return out.handled ? { received: true, handled: true, type: out.type } : { received: true, handled: false, type: out.type, reason: out.reason };
      },
    );
  });
}
