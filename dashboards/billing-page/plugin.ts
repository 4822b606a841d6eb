import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyPluginAsync } from 'fastify';
import { pageCsp } from '../../ui/index.ts';

/**
 * The built-in billing page: `GET /billing` (public: it asks for an API key and keeps it in sessionStorage)
 * and its script; it is styled by the shared /ui/forge.css alone (the API serves it). It reads only the billing API (usage, the month's draft invoice with its per-model,
 * per-agent and per-day detail, the last months' invoices), whose routes check role and tenant.
 */
const here = dirname(fileURLToPath(import.meta.url));
const CSP = pageCsp();

export const billingPageRoutes: FastifyPluginAsync = async (app) => {
  const page = readFileSync(join(here, 'index.html'), 'utf8');
  const script = readFileSync(join(here, 'page.js'), 'utf8');
  const hide = { hide: true } as Record<string, unknown>;
  // refresh_ms: how often the page reloads its numbers (default 5 s).
  const pageQuery = { type: 'object', additionalProperties: false, properties: { refresh_ms: { type: 'integer', minimum: 100, maximum: 600_000 } } } as const;
  app.get('/billing', { config: { public: true }, schema: { ...hide, querystring: pageQuery } }, async (_req, reply) => {
    void reply.type('text/html; charset=utf-8').header('content-security-policy', CSP).header('cache-control', 'no-store');
    return page;
  });
  app.get('/billing/page.js', { config: { public: true }, schema: hide }, async (_req, reply) => {
    void reply.type('text/javascript; charset=utf-8');
    return script;
  });
};
