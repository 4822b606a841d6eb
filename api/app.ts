import cookie from '@fastify/cookie';
import csrf from '@fastify/csrf-protection';
import rateLimit from '@fastify/rate-limit';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyInstance, type FastifyPluginAsync } from 'fastify';
import type { KeyStore, Role } from './auth.ts';
import type { BoundsOutcome, PlatformMetrics, TaskBounds } from '../collector/index.ts';
import type { Guardrail, IntakeGate } from '../guard/index.ts';
import { httpErrorOf } from '../collector/index.ts';
import { ApiError } from './errors.ts';
import { accountPages, type Accounts, type OidcSignIn } from '../accounts/index.ts';
import { uiRoutes } from '../ui/index.ts';
import { installAuth, installErrorHandler, type SessionAuth, type TenantDirectory } from './http.ts';
import { accountRoutes, SESSION_COOKIE } from './routes/accounts.ts';
import { adminRoutes } from './routes/admin.ts';
import { guardrailRoutes } from './routes/guardrail.ts';
import { intakeRoutes } from './routes/intake.ts';

export interface AppParts {
  /** Prices a task's bounds (what it can cost at most) for admissions; absent: bounds are refused. */
  priceBounds?: (b: TaskBounds) => BoundsOutcome;
  guardrail: Guardrail;
  /** Tenant intake pauses (execution spikes): read and resumed over the API (the guardrail refuses a paused tenant's admissions). */
  intake?: IntakeGate;
  keys: KeyStore;
  now: () => number;
  onError: (e: unknown, where: string) => void;
  /** Readiness of the parts behind the API (store reachable, ledger reachable). */
  ready?: () => Promise<{ ok: boolean; checks: Record<string, string> }>;
  /** Prometheus exposition (text) for /metrics. */
  metricsText?: () => Promise<string>;
  /** Requests, errors and latency per route, and process metrics, appended to /metrics. */
  platformMetrics?: PlatformMetrics;
  /** /metrics without a key (FORGE_METRICS_PUBLIC); default false: a key with oncall, finance or auditor, bound to all tenants. */
  metricsPublic?: boolean;
  /** Which tenants exist; without it, tenants are not checked for existence (tests of single parts). */
  tenants?: TenantDirectory;
  /** Further route plugins (collector ingest, reports, audit, billing, burn page). */
  plugins?: ReadonlyArray<FastifyPluginAsync>;
  logLevel?: string;
  bodyLimit?: number;
  /** Web UI accounts (sessions beside API keys, signup, 2FA, SSO) and their pages; absent: API keys only. */
  accounts?: AccountParts;
}

export interface AccountParts {
  accounts: Accounts;
  oidc?: OidcSignIn;
  /** Requests per minute and client address on each sign-in route (default 20). */
  authRateLimit?: number;
  /** Secure cookies (default true; false only for plain-http development). */
  cookieSecure?: boolean;
  /** Counts the rate limit in Redis, so every API process shares it (an ioredis client); absent: per process. */
  rateLimitRedis?: { redis: unknown; prefix: string };
}

/** Builds the whole HTTP app; tests use app.inject(), `forge start` listens. */
export async function buildApp(p: AppParts): Promise<FastifyInstance> {
  const app = Fastify({
    logger: p.logLevel && p.logLevel !== 'silent' ? { level: p.logLevel, redact: ['req.headers.authorization', 'req.headers["x-api-key"]', 'req.headers.cookie', 'req.headers["x-csrf-token"]'] } : false,
    bodyLimit: p.bodyLimit ?? 5 * 1024 * 1024,
    // Nothing is converted: a number where a string belongs (or "1e5" where a number does) is refused.
    // Query strings are read as numbers only where the route declares one (http.ts).
    ajv: { customOptions: { removeAdditional: false, coerceTypes: false, allErrors: false, strictNumbers: true } },
    return503OnClosing: true,
    // Errors raised before routing (a bad URL, a path parameter over the limit) in the Forge shape too.
    frameworkErrors: (err, _req, reply) => {
      const m = httpErrorOf(err);
      const r = reply as unknown as { status(n: number): { send(b: unknown): unknown } };
      void r.status(m?.status ?? 400).send(m?.body ?? { error: { code: 'FORGE_ERR_VALIDATION', message: 'bad request', field: 'url' } });
    },
  });
  installErrorHandler(app, p.onError);
  if (p.platformMetrics) {
    const pm = p.platformMetrics;
    // The route template (not the URL) keeps the label set bounded; unmatched paths share one value.
    app.addHook('onResponse', async (req, reply) => {
      pm.recordRequest(req.routeOptions.url ?? 'unmatched', req.method, reply.statusCode, reply.elapsedTime / 1000);
    });
    app.addHook('onRoute', (route) => {
      if (!route.url.startsWith('/docs')) for (const m of Array.isArray(route.method) ? route.method : [route.method]) if (m !== 'HEAD') pm.declareRoute(route.url, m);
    });
  }
  // Bodies are JSON (or, where a route says so, its own format): text/plain is not silently accepted.
  app.removeContentTypeParser('text/plain');
  await app.register(swagger, {
    openapi: {
      info: { title: 'Forge API', version: '0.1.0', description: 'Guardrail state, admissions (reserve, then settle), operator actions, budgets, reports, audit, ingest.' },
      components: { securitySchemes: { apiKey: { type: 'http', scheme: 'bearer' } } },
      security: [{ apiKey: [] }],
    },
  });
  app.addHook('onRoute', (route) => {
    if (route.url.startsWith('/docs')) route.config = { ...(route.config ?? {}), public: true };
  });
  await app.register(swaggerUi, { routePrefix: '/docs', uiConfig: { docExpansion: 'list' } });
  // Routes from the parts (collector ingest, its /metrics) do not know the API's roles: set them here.
  const metricsPolicy: { roles?: readonly Role[]; public?: boolean; allTenants?: boolean } = p.metricsPublic === true ? { public: true } : { roles: ['oncall', 'finance', 'auditor'], allTenants: true };
  const policy: Array<[RegExp, { roles?: readonly Role[]; public?: boolean; allTenants?: boolean }]> = [
    [/^\/v1\/(events|logs|traces)$/, { roles: ['runner'] }],
    [/^\/metrics$/, metricsPolicy],
  ];
  // Every route's method and path (405 for a known path under another method), and its roles in the
  // OpenAPI document (x-forge-roles) so clients and the hostile-input suite know who may call it.
  const known: Array<{ method: string; re: RegExp }> = [];
  app.addHook('onRoute', (route) => {
    if (!route.config?.roles && !route.config?.public) {
      const hit = policy.find(([re]) => re.test(route.url));
      if (hit) route.config = { ...(route.config ?? {}), ...hit[1] };
    }
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    const re = new RegExp(`^${route.url.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/:[A-Za-z_]+/g, '[^/]+')}/?$`);
    for (const m of methods) known.push({ method: m, re });
    // An exact schema for every query string and path: a field nobody declared is refused. (Bodies: each
    // route declares its own; one in a part's own format, OTLP protobuf, is that part's to validate.)
    if (route.schema && !route.url.startsWith('/docs')) {
      const strict = { type: 'object', additionalProperties: false, properties: {} };
      const hasParams = route.url.includes(':');
      route.schema = {
        ...route.schema,
        ...(route.schema.querystring ? {} : { querystring: strict }),
        ...(route.schema.params || !hasParams ? {} : { params: strict }),
      };
    }
    if (route.schema && !route.config?.public) {
      route.schema = { ...route.schema, 'x-forge-roles': ['admin', ...(route.config?.roles ?? [])], ...(route.config?.allTenants ? { 'x-forge-all-tenants': true } : {}), ...(route.config?.newTenant ? { 'x-forge-new-tenant': true } : {}) } as typeof route.schema;
    }
  });
  app.setNotFoundHandler(async (req) => {
    const path = req.url.split('?')[0] ?? '';
    const allow = [...new Set(known.filter((k) => k.re.test(path)).map((k) => k.method))];
    if (allow.length > 0) throw Object.assign(new ApiError('FORGE_ERR_METHOD_NOT_ALLOWED', `${req.method} is not allowed here (allowed: ${allow.join(', ')})`, 'method'), { allow: allow.join(', ') });
    throw new ApiError('FORGE_ERR_NOT_FOUND', `no route ${req.method} ${path}`, 'url');
  });
  let sessions: SessionAuth | undefined;
  if (p.accounts) {
    const a = p.accounts.accounts;
    await app.register(cookie);
    await app.register(csrf, { sessionPlugin: '@fastify/cookie', cookieKey: 'forge_csrf', cookieOpts: { path: '/', sameSite: 'lax', httpOnly: true, secure: p.accounts.cookieSecure ?? true } });
    await app.register(rateLimit, {
      global: false,
      // Shared by every process when Redis is there; while it is away, the store's lockout still holds.
      ...(p.accounts.rateLimitRedis ? { redis: p.accounts.rateLimitRedis.redis, nameSpace: `${p.accounts.rateLimitRedis.prefix}auth-rate:`, skipOnError: true } : {}),
      errorResponseBuilder: (_req, ctx) => new ApiError('FORGE_ERR_RATE_LIMITED', `too many requests; try again in ${ctx.after}`, 'url'),
    });
    sessions = {
      cookie: SESSION_COOKIE,
      session: (token) => a.session(token),
      checkCsrf: (req) =>
        new Promise<void>((resolve, reject) => {
          const refuse = (): void => reject(new ApiError('FORGE_ERR_CSRF', 'the CSRF token is missing or wrong (GET /v1/auth/csrf, then send it as x-csrf-token)', 'x-csrf-token'));
          app.csrfProtection(req, { send: refuse } as never, () => resolve());
        }),
    };
  }
  installAuth(app, p.keys, p.tenants, sessions);

  app.get('/healthz', { config: { public: true }, schema: { hide: true } }, async () => ({ status: 'ok' }));
  app.get('/readyz', { config: { public: true }, schema: { hide: true } }, async (_req, reply) => {
    const r = p.ready ? await p.ready() : { ok: true, checks: {} };
    void reply.status(r.ok ? 200 : 503);
    return { status: r.ok ? 'ready' : 'not ready', checks: r.checks };
  });
  if (p.metricsText) {
    const text = p.metricsText;
    app.get('/metrics', { config: metricsPolicy, schema: { hide: true } }, async (_req, reply) => {
      void reply.type('text/plain; version=0.0.4; charset=utf-8');
      return text();
    });
  }
  // The stylesheet every web page links (the burn, billing, eval and account pages).
  await app.register(uiRoutes);
  await app.register(guardrailRoutes, { guardrail: p.guardrail, now: p.now, ...(p.priceBounds ? { priceBounds: p.priceBounds } : {}) });
  if (p.intake) await app.register(intakeRoutes, { intake: p.intake });
  await app.register(adminRoutes, { guardrail: p.guardrail, keys: p.keys, now: p.now });
  if (p.accounts) {
    await app.register(accountRoutes, { accounts: p.accounts.accounts, keys: p.keys, ...(p.accounts.oidc ? { oidc: p.accounts.oidc } : {}), ...(p.accounts.authRateLimit ? { authRateLimit: p.accounts.authRateLimit } : {}), cookieSecure: p.accounts.cookieSecure ?? true });
    await app.register(accountPages, { sso: p.accounts.oidc !== undefined });
  }
  for (const plugin of p.plugins ?? []) await app.register(plugin);
  return app;
}
