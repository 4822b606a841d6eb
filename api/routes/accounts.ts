import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { Accounts, OidcSignIn, SessionUser, SignIn } from '../../accounts/index.ts';
import { ROLES, type KeyStore, type Role } from '../auth.ts';
import { ApiError, errorBodySchema } from '../errors.ts';

/** The session cookie (HttpOnly, SameSite=Lax, Secure unless turned off for plain-http development). */
export const SESSION_COOKIE = 'forge_session';

export interface AccountRoutesOptions {
  accounts: Accounts;
  keys: KeyStore;
  /** Single sign-on, when configured. */
  oidc?: OidcSignIn;
  /** Requests per minute and client address on each sign-in route (default 20). */
  authRateLimit?: number;
  cookieSecure?: boolean;
  sessionTtlMs?: number;
}

const str = (max: number, extra: Record<string, unknown> = {}) => ({ type: 'string', minLength: 1, maxLength: max, pattern: '^[^\\u0000-\\u001f\\u007f]*$', ...extra }) as const;
const err = { 400: errorBodySchema, 401: errorBodySchema, 403: errorBodySchema, 404: errorBodySchema, 409: errorBodySchema, 429: errorBodySchema } as const;
const userSchema = {
  type: 'object',
  required: ['user_id', 'email', 'tenant_id', 'roles', 'totp_enabled'],
  properties: { user_id: { type: 'string' }, email: { type: 'string' }, tenant_id: { type: 'string' }, roles: { type: 'array', items: { type: 'string' } }, totp_enabled: { type: 'boolean' } },
} as const;
const signInSchema = {
  type: 'object',
  required: ['status'],
  properties: { status: { type: 'string', enum: ['signed_in', 'second_factor'] }, challenge: { type: 'string' }, user: userSchema },
} as const;
const keySchema = {
  type: 'object',
  required: ['id', 'name', 'roles', 'created_at'],
  properties: { id: { type: 'string' }, name: { type: 'string' }, roles: { type: 'array', items: { type: 'string' } }, created_at: { type: 'string' }, revoked_at: { type: 'string' }, expires_at: { type: 'string' } },
} as const;

/** The signed-in user of a request authenticated by its session cookie (API keys do not manage accounts). */
export function sessionUserOf(req: FastifyRequest): SessionUser {
  if (!req.sessionUser) throw new ApiError('FORGE_ERR_UNAUTHENTICATED', 'sign in to the web UI: this route takes a session, not an API key', 'cookie');
  return req.sessionUser;
}

function userView(u: SessionUser): Record<string, unknown> {
  return { user_id: u.userId, email: u.email, tenant_id: u.tenantId, roles: u.roles, totp_enabled: u.totpEnabled };
}

/**
 * The account routes under /v1/auth: signup, email verification, sign-in (password, then the second factor),
 * OIDC sign-in, sign-out, the second factor's setup, and the user's own API keys. The sign-in routes are public,
 * rate limited per client address and CSRF-checked (the app's auth hook); the rest take a session.
 */
export const accountRoutes: FastifyPluginAsync<AccountRoutesOptions> = async (app, o) => {
  const limit = { rateLimit: { max: o.authRateLimit ?? 20, timeWindow: 60_000 } };
  const publicAuth = { public: true, csrf: true, ...limit } as const;
  const secure = o.cookieSecure ?? true;
  const anyRole = [...ROLES] as Role[];

  const setSession = (reply: FastifyReply, token: string): void => {
    void reply.setCookie(SESSION_COOKIE, token, { path: '/', httpOnly: true, sameSite: 'lax', secure, maxAge: Math.floor((o.sessionTtlMs ?? 12 * 3_600_000) / 1000) });
  };
  const answer = (reply: FastifyReply, r: SignIn): Record<string, unknown> => {
    if (r.kind === 'challenge') return { status: 'second_factor', challenge: r.challenge };
    setSession(reply, r.session);
    return { status: 'signed_in', user: userView(r.user) };
  };

  app.get('/v1/auth/csrf', { config: { public: true }, schema: { summary: 'A CSRF token for the web UI (send it as x-csrf-token on every change made with a session)', tags: ['accounts'], security: [], response: { 200: { type: 'object', required: ['token'], properties: { token: { type: 'string' } } } } } }, async (_req, reply) => ({ token: reply.generateCsrf() }));

  app.post<{ Body: { email: string; password: string; tenant_id: string } }>(
    '/v1/auth/signup',
    {
      config: { ...publicAuth, newTenant: true },
      schema: {
        summary: 'Sign a new tenant up: the account (unverified) and its tenant; a verification link goes by email',
        tags: ['accounts'],
        security: [],
        body: { type: 'object', additionalProperties: false, required: ['email', 'password', 'tenant_id'], properties: { email: str(254), password: str(200), tenant_id: str(64, { pattern: '^[A-Za-z0-9._-]{1,64}$' }) } },
        response: { 201: { type: 'object', required: ['user_id', 'verification'], properties: { user_id: { type: 'string' }, verification: { type: 'string' } } }, ...err },
      },
    },
    async (req, reply) => {
      const r = await o.accounts.signup({ email: req.body.email, password: req.body.password, tenantId: req.body.tenant_id });
      void reply.status(201);
      return { user_id: r.userId, verification: 'sent' };
    },
  );

  app.post<{ Body: { token: string } }>(
    '/v1/auth/verify',
    {
      config: publicAuth,
      schema: { summary: 'Verify an email with the token of its link', tags: ['accounts'], security: [], body: { type: 'object', additionalProperties: false, required: ['token'], properties: { token: str(100) } }, response: { 200: { type: 'object', properties: { verified: { type: 'boolean' } } }, ...err } },
    },
    async (req) => {
      await o.accounts.verifyEmail(req.body.token);
      return { verified: true };
    },
  );

  app.post<{ Body: { email: string; password: string } }>(
    '/v1/auth/login',
    {
      config: publicAuth,
      schema: {
        summary: 'Sign in with email and password: a session cookie, or a challenge for the second factor',
        tags: ['accounts'],
        security: [],
        body: { type: 'object', additionalProperties: false, required: ['email', 'password'], properties: { email: str(254), password: str(200) } },
        response: { 200: signInSchema, ...err },
      },
    },
    async (req, reply) => answer(reply, await o.accounts.login({ email: req.body.email, password: req.body.password })),
  );

  app.post<{ Body: { challenge: string; code: string } }>(
    '/v1/auth/login/second-factor',
    {
      config: publicAuth,
      schema: {
        summary: 'Answer the sign-in challenge with a TOTP code or a recovery code',
        tags: ['accounts'],
        security: [],
        body: { type: 'object', additionalProperties: false, required: ['challenge', 'code'], properties: { challenge: str(100), code: str(40) } },
        response: { 200: signInSchema, ...err },
      },
    },
    async (req, reply) => answer(reply, await o.accounts.completeTwoFactor({ challenge: req.body.challenge, code: req.body.code })),
  );

  app.get(
    '/v1/auth/oidc/start',
    { config: { public: true, ...limit }, schema: { summary: 'Single sign-on: redirects to the OpenID Connect provider', tags: ['accounts'], security: [], response: { 302: { type: 'null' }, ...err } } },
    async (_req, reply) => {
      if (!o.oidc) throw new ApiError('FORGE_ERR_NOT_FOUND', 'single sign-on is not configured (FORGE_OIDC_ISSUER)', 'url');
      return reply.redirect(await o.oidc.start((data) => o.accounts.putOidcState(data)));
    },
  );

  app.get<{ Querystring: Record<string, string> }>(
    '/v1/auth/oidc/callback',
    {
      config: { public: true, ...limit },
      schema: {
        summary: 'Single sign-on: where the provider returns; opens a session (or asks for the second factor) and redirects to the account page',
        tags: ['accounts'],
        security: [],
        querystring: { type: 'object', additionalProperties: { type: 'string', maxLength: 4096 }, properties: { state: str(100), code: str(4096) } },
        response: { 302: { type: 'null' }, ...err },
      },
    },
    async (req, reply) => {
      if (!o.oidc) throw new ApiError('FORGE_ERR_NOT_FOUND', 'single sign-on is not configured (FORGE_OIDC_ISSUER)', 'url');
      const state = req.query.state;
      if (typeof state !== 'string') throw new ApiError('FORGE_ERR_VALIDATION', 'state is required', 'state');
      const kept = await o.accounts.takeOidcState(state);
      let claims;
      try {
        claims = await o.oidc.finish(req.url.slice(req.url.indexOf('?')), state, kept);
      } catch (e) {
        req.log.warn({ err: (e as Error).message }, 'OIDC callback refused');
        throw new ApiError('FORGE_ERR_VALIDATION', 'the identity provider\'s answer did not check out; start again', 'code');
      }
      const r = await o.accounts.oidcLogin(claims);
      if (r.kind === 'challenge') return reply.redirect(`/account/login#challenge=${encodeURIComponent(r.challenge)}`);
      setSession(reply, r.session);
      return reply.redirect('/account');
    },
  );

  app.post('/v1/auth/logout', { config: { roles: anyRole }, schema: { summary: 'Sign out (ends the session)', tags: ['accounts'], response: { 204: { type: 'null' }, ...err } } }, async (req, reply) => {
    sessionUserOf(req);
    const token = req.cookies[SESSION_COOKIE];
    if (token) await o.accounts.logout(token);
    void reply.clearCookie(SESSION_COOKIE, { path: '/' });
    return reply.status(204).send();
  });

  app.get('/v1/auth/me', { config: { roles: anyRole }, schema: { summary: 'The signed-in user', tags: ['accounts'], response: { 200: userSchema, ...err } } }, async (req) => userView(sessionUserOf(req)));

  app.post('/v1/auth/2fa/setup', { config: { roles: anyRole }, schema: { summary: 'Start TOTP setup: a new secret, shown once', tags: ['accounts'], response: { 200: { type: 'object', required: ['secret', 'otpauth_uri'], properties: { secret: { type: 'string' }, otpauth_uri: { type: 'string' } } }, ...err } } }, async (req, reply) => {
    const r = await o.accounts.startTotp(sessionUserOf(req).userId);
    void reply.header('cache-control', 'no-store');
    return { secret: r.secret, otpauth_uri: r.uri };
  });

  const codeBody = { type: 'object', additionalProperties: false, required: ['code'], properties: { code: str(40) } } as const;
  app.post<{ Body: { code: string } }>(
    '/v1/auth/2fa/enable',
    { config: { roles: anyRole }, schema: { summary: 'Turn TOTP on with a code from the new secret; returns the one-time recovery codes (shown once)', tags: ['accounts'], body: codeBody, response: { 200: { type: 'object', required: ['recovery_codes'], properties: { recovery_codes: { type: 'array', items: { type: 'string' } } } }, ...err } } },
    async (req, reply) => {
      const r = await o.accounts.enableTotp(sessionUserOf(req).userId, req.body.code);
      void reply.header('cache-control', 'no-store');
      return { recovery_codes: r.recoveryCodes };
    },
  );

  app.post<{ Body: { code: string } }>(
    '/v1/auth/2fa/disable',
    { config: { roles: anyRole }, schema: { summary: 'Turn TOTP off (needs a current code or a recovery code)', tags: ['accounts'], body: codeBody, response: { 204: { type: 'null' }, ...err } } },
    async (req, reply) => {
      await o.accounts.disableTotp(sessionUserOf(req).userId, req.body.code);
      return reply.status(204).send();
    },
  );

  app.get('/v1/auth/keys', { config: { roles: anyRole }, schema: { summary: 'The API keys of the user\'s tenant (never their secrets)', tags: ['accounts'], response: { 200: { type: 'object', required: ['keys'], properties: { keys: { type: 'array', items: keySchema } } }, ...err } } }, async (req) => {
    const u = sessionUserOf(req);
    const keys = o.keys.list().filter((k) => k.tenantId === u.tenantId);
    return { keys: keys.map((k) => ({ id: k.id, name: k.name, roles: k.roles, created_at: k.createdAt, ...(k.revokedAt ? { revoked_at: k.revokedAt } : {}), ...(k.expiresAt ? { expires_at: k.expiresAt } : {}) })) };
  });

  app.post<{ Body: { name: string; roles: Role[] } }>(
    '/v1/auth/keys',
    {
      config: { roles: anyRole },
      schema: {
        summary: 'Create an API key bound to the user\'s tenant, with roles the user holds; the key is shown once',
        tags: ['accounts'],
        body: { type: 'object', additionalProperties: false, required: ['name', 'roles'], properties: { name: str(100), roles: { type: 'array', minItems: 1, maxItems: ROLES.length, items: { type: 'string', enum: [...ROLES] } } } },
        response: { 201: { type: 'object', required: ['id', 'key'], properties: { id: { type: 'string' }, key: { type: 'string' } } }, ...err },
      },
    },
    async (req, reply) => {
      const u = sessionUserOf(req);
      const missing = req.body.roles.filter((r) => !u.roles.includes('admin') && !u.roles.includes(r));
      if (missing.length > 0) throw new ApiError('FORGE_ERR_FORBIDDEN_ROLE', `you do not hold ${missing.join(', ')}`, 'roles');
      const k = await o.keys.create({ name: req.body.name, roles: req.body.roles, tenantId: u.tenantId, actor: `user:${u.userId}` });
      void reply.status(201).header('cache-control', 'no-store');
      return { id: k.id, key: k.key };
    },
  );

  app.delete<{ Params: { id: string } }>(
    '/v1/auth/keys/:id',
    { config: { roles: anyRole }, schema: { summary: 'Revoke an API key of the user\'s tenant', tags: ['accounts'], params: { type: 'object', additionalProperties: false, required: ['id'], properties: { id: { type: 'string', minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9._-]+$' } } }, response: { 204: { type: 'null' }, ...err } } },
    async (req, reply) => {
      const u = sessionUserOf(req);
      const k = o.keys.list().find((x) => x.id === req.params.id);
      // Another tenant's key is as unknown as a missing one.
      if (!k || k.tenantId !== u.tenantId || !(await o.keys.revoke(k.id, `user:${u.userId}`))) throw new ApiError('FORGE_ERR_NOT_FOUND', 'no active key with this id in your tenant', 'id');
      return reply.status(204).send();
    },
  );
};
