import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyPluginAsync } from 'fastify';
import { pageCsp } from '../../ui/index.ts';

/**
 * The eval pages: `/eval` (a suite's leaderboard: the public board of published runs, or with an API key the
 * tenant's own) and `/eval/run` (one run's tasks: status, score, rubric breakdown, logs, errors, cost
 * components, duration). Static HTML, one script and the pages' own styles (after the shared
 * /ui/forge.css, which the API serves); the data comes from the /v1 eval routes, which check keys, roles
 * and tenants. The key is kept in sessionStorage (the burn page's, so one entry serves both).
 */
const here = dirname(fileURLToPath(import.meta.url));
const CSP = pageCsp();

export const evalPageRoutes: FastifyPluginAsync = async (app) => {
  const board = readFileSync(join(here, 'leaderboard.html'), 'utf8');
  const run = readFileSync(join(here, 'run.html'), 'utf8');
  const script = readFileSync(join(here, 'pages.js'), 'utf8');
  const css = readFileSync(join(here, 'pages.css'), 'utf8');
  const hide = { hide: true } as Record<string, unknown>;
  // The pages read these from the address (the API checks them again); nothing else is accepted.
  const pageQuery = {
    hide: true,
    querystring: {
      type: 'object',
      additionalProperties: false,
      properties: { suite: { type: 'string', maxLength: 64 }, tenant: { type: 'string', maxLength: 64 }, run: { type: 'string', maxLength: 128 } },
    },
  } as Record<string, unknown>;
  for (const [url, body] of [
    ['/eval', board],
    ['/eval/run', run],
  ] as const) {
    app.get(url, { config: { public: true }, schema: pageQuery }, async (_req, reply) => {
      void reply.type('text/html; charset=utf-8').header('content-security-policy', CSP).header('cache-control', 'no-store');
      return body;
    });
  }
  for (const [url, type, body] of [
    ['/eval/pages.js', 'text/javascript; charset=utf-8', script],
    ['/eval/pages.css', 'text/css; charset=utf-8', css],
  ] as const) {
    app.get(url, { config: { public: true }, schema: hide }, async (_req, reply) => {
      void reply.type(type);
      return body;
    });
  }
};
