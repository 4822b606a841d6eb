import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyInstance, type FastifyPluginAsync } from 'fastify';
import type { KeyStore, Role } from './auth.ts';
import type { Guardrail } from '../guard/index.ts';
import { installAuth, installErrorHandler } from './http.ts';
import { adminRoutes } from './routes/admin.ts';
import { guardrailRoutes } from './routes/guardrail.ts';

export interface AppParts {
  guardrail: Guardrail;
  keys: KeyStore;
  now: () => number;
  onError: (e: unknown, where: string) => void;
  /** Readiness of the parts behind the API (store reachable, ledger reachable). */
  ready?: () => Promise<{ ok: boolean; checks: Record<string, string> }>;
  /** Prometheus exposition (text) for /metrics. */
  metricsText?: () => Promise<string>;
  metricsPublic?: boolean;
  /** Further route plugins (collector ingest, reports, audit, billing, burn page). */
  plugins?: ReadonlyArray<FastifyPluginAsync>;
  logLevel?: string;
  bodyLimit?: number;
}

/** Builds the whole HTTP app; tests use app.inject(), `forge start` listens. */
export async function buildApp(p: AppParts): Promise<FastifyInstance> {
  const app = Fastify({
    logger: p.logLevel && p.logLevel !== 'silent' ? { level: p.logLevel, redact: ['req.headers.authorization', 'req.headers["x-api-key"]'] } : false,
    bodyLimit: p.bodyLimit ?? 5 * 1024 * 1024,
    ajv: { customOptions: { removeAdditional: false, coerceTypes: 'array', allErrors: false } },
    return503OnClosing: true,
  });
  installErrorHandler(app, p.onError);
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
  const policy: Array<[RegExp, { roles?: readonly Role[]; public?: boolean }]> = [
    [/^\/v1\/(events|logs)$/, { roles: ['runner'] }],
    [/^\/metrics$/, p.metricsPublic === false ? { roles: ['oncall', 'finance', 'auditor'] } : { public: true }],
  ];
  app.addHook('onRoute', (route) => {
    if (route.config?.roles || route.config?.public) return;
    const hit = policy.find(([re]) => re.test(route.url));
    if (hit) route.config = { ...(route.config ?? {}), ...hit[1] };
  });
  installAuth(app, p.keys);

  app.get('/healthz', { config: { public: true }, schema: { hide: true } }, async () => ({ status: 'ok' }));
  app.get('/readyz', { config: { public: true }, schema: { hide: true } }, async (_req, reply) => {
    const r = p.ready ? await p.ready() : { ok: true, checks: {} };
    void reply.status(r.ok ? 200 : 503);
    return { status: r.ok ? 'ready' : 'not ready', checks: r.checks };
  });
  if (p.metricsText) {
    const text = p.metricsText;
    app.get('/metrics', { config: p.metricsPublic === false ? { roles: ['oncall', 'finance', 'auditor'] } : { public: true }, schema: { hide: true } }, async (_req, reply) => {
      void reply.type('text/plain; version=0.0.4; charset=utf-8');
      return text();
    });
  }
  await app.register(guardrailRoutes, { guardrail: p.guardrail, now: p.now });
  await app.register(adminRoutes, { guardrail: p.guardrail, keys: p.keys, now: p.now });
  for (const plugin of p.plugins ?? []) await app.register(plugin);
  return app;
}
