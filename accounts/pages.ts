import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyPluginAsync } from 'fastify';
import { pageCsp } from '../ui/index.ts';

/** The account pages: signup, verify, sign-in (with the second factor and SSO), and the account itself. */
export interface AccountPagesOptions {
  /** Show "Sign in with SSO" (an OIDC provider is configured). */
  sso: boolean;
}

const here = dirname(fileURLToPath(import.meta.url));
const CSP = pageCsp({ forms: true });

/**
 * Static pages, public (they hold no data): every /account path serves the same page, whose script talks to
 * /v1/auth/* (and /v1/agents) with the session cookie and the CSRF token.
 */
export const accountPages: FastifyPluginAsync<AccountPagesOptions> = async (app, o) => {
  const page = readFileSync(join(here, 'ui', 'index.html'), 'utf8').replace('data-sso="0"', `data-sso="${o.sso ? '1' : '0'}"`);
  const script = readFileSync(join(here, 'ui', 'account.js'), 'utf8');
  const hide = { hide: true } as Record<string, unknown>;
  const html = async (_req: unknown, reply: { type(t: string): { header(k: string, v: string): { header(k: string, v: string): unknown } } }): Promise<string> => {
    reply.type('text/html; charset=utf-8').header('content-security-policy', CSP).header('cache-control', 'no-store');
    return page;
  };
  for (const path of ['/account', '/account/signup', '/account/login', '/account/verify']) app.get(path, { config: { public: true }, schema: hide }, html);
  app.get('/account/account.js', { config: { public: true }, schema: hide }, async (_req, reply) => {
    void reply.type('text/javascript; charset=utf-8').header('cache-control', 'no-store');
    return script;
  });
};
