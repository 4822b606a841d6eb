import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyPluginAsync } from 'fastify';

/**
 * ui/: what Forge's web pages share (the burn page, the billing page, the eval pages, the account pages): one
 * stylesheet, served at FORGE_CSS_URL by `uiRoutes` (the API registers it once, beside the pages), and one
 * security policy (`pageCsp`). The pages link the sheet before their own rules; each page keeps the rules only
 * it uses. Imports no other part.
 */
export const FORGE_CSS_URL = '/ui/forge.css';

const css = readFileSync(join(dirname(fileURLToPath(import.meta.url)), 'forge.css'), 'utf8');

/** `GET /ui/forge.css`: public (the pages are), cached for a short while (a redeploy may change it). */
export const uiRoutes: FastifyPluginAsync = async (app) => {
  app.get(FORGE_CSS_URL, { config: { public: true }, schema: { hide: true } as Record<string, unknown> }, async (_req, reply) => {
    void reply.type('text/css; charset=utf-8').header('cache-control', 'public, max-age=300');
    return css;
  });
};

/**
 * The content security policy every page is served with: its own origin only, no framing; `forms` lets the
 * page's forms post to its origin (the account pages), otherwise no form posts at all.
 */
export function pageCsp(opts: { forms?: boolean } = {}): string {
  return `default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action ${opts.forms === true ? "'self'" : "'none'"}`;
}
