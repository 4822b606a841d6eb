import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyPluginAsync } from 'fastify';

/**
 * The eval pages: `/eval` (a suite's leaderboard: the public board of published runs, or with an API key the
 * tenant's own) and `/eval/run` (one run's tasks: status, score, rubric breakdown, logs, errors, cost
 * components, duration). Static HTML and one script; the data comes from the /v1 eval routes, which check
 * keys, roles and tenants. The key is kept in sessionStorage (the burn page's, so one entry serves both).
 */
const here = dirname(fileURLToPath(import.meta.url));
const CSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

export const evalPageRoutes: FastifyPluginAsync = async (app) => {
  const board = readFileSync(join(here, 'leaderboard.html'), 'utf8');
  const run = readFileSync(join(here, 'run.html'), 'utf8');
  const script = readFileSync(join(here, 'pages.js'), 'utf8');
  const hide = { hide: true } as Record<string, unknown>;
  for (const [url, body] of [
    ['/eval', board],
    ['/eval/run', run],
  ] as const) {
    // The pages take ?tenant=&run=&suite= (the links they and the account page make); the app refuses undeclared query fields.
    const query = { type: 'object', additionalProperties: false, properties: { tenant: { type: 'string', maxLength: 64 }, run: { type: 'string', maxLength: 128 }, suite: { type: 'string', maxLength: 128 } } };
    app.get(url, { config: { public: true }, schema: { ...hide, querystring: query } }, async (_req, reply) => {
      void reply.type('text/html; charset=utf-8').header('content-security-policy', CSP).header('cache-control', 'no-store');
      return body;
    });
  }
  app.get('/eval/pages.js', { config: { public: true }, schema: hide }, async (_req, reply) => {
    void reply.type('text/javascript; charset=utf-8');
    return script;
  });
};
