import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { burnData, RUN_RE, TENANT_RE, type BandsMicros, type SqlSource } from '../burn-data.ts';
import { COMPONENTS } from '../../rules/index.ts';
import { pageCsp } from '../../ui/index.ts';

/**
 * The built-in burn page: `GET /` (the page, public: it asks for an API key and keeps it in
 * sessionStorage; styled by the shared /ui/forge.css, which the API serves, and rules of its own), its
 * script and chart.js, and `GET /v1/burn/data` (the JSON it draws; finance role,
 * tenant-bound keys see only their tenant). The numbers come from the dashboards' own SQL, run on the
 * store's engine with bound parameters.
 *
 * The host app authenticates (sets `request.principal`) and checks `config.roles`; the data route checks
 * the role and the tenant binding again itself, so it stays closed if mounted without that hook.
 */
export interface BurnPageOptions {
  /** The event log: the store's database and a read-only query with {name:Type} parameters (see sqlSource). */
  store: SqlSource;
  /** Current guardrail state of every scope the service knows (`global`, `tenant:<id>`, `run:<tenant>/<run>`). */
  guardrailStates: () => ReadonlyArray<{ scope: string; state: string }>;
  /** The bands in force for a scope, integer USD micros (rules' Bands / Thresholds fit). */
  bands: (scope: string) => BandsMicros;
  /** Clock, epoch ms (default Date.now). */
  now?: () => number;
}

/** Who is calling, as the API's auth hook sets it (null tenantId = every tenant). */
interface PrincipalLike {
  roles: readonly string[];
  tenantId: string | null;
}

const here = dirname(fileURLToPath(import.meta.url));
const chartJsPath = join(dirname(createRequire(import.meta.url).resolve('chart.js')), 'chart.umd.js');

const CSP = pageCsp();

const errorBody = {
  type: 'object',
  required: ['error'],
  properties: { error: { type: 'object', required: ['code', 'message'], properties: { code: { type: 'string' }, message: { type: 'string' }, field: { type: 'string' } } } },
} as const;
const num = { type: 'number' } as const;
const numOrNull = { type: ['number', 'null'] } as const;
const str = { type: 'string' } as const;
const burnDataSchema = {
  type: 'object',
  required: ['tenant', 'run', 'scope', 'from', 'to', 'states', 'bands', 'daily', 'composition', 'unit', 'runway', 'stopConditions24h', 'recentStops'],
  properties: {
    tenant: str,
    run: { type: ['string', 'null'] },
    scope: str,
    from: num,
    to: num,
    states: { type: 'array', items: { type: 'object', required: ['scope', 'state'], properties: { scope: str, state: str } } },
    bands: {
      type: 'object',
      properties: { daySoftUsd: num, dayHardUsd: num, weekSoftUsd: num, weekHardUsd: num, runCapUsd: num, unitCapUsd: num },
    },
    daily: { type: 'array', items: { type: 'object', properties: { day: str, totalUsd: num } } },
    components: { type: 'array', items: { type: 'object', properties: { key: str, label: str, colour: str } } },
    composition: { type: 'array', items: { type: 'object', properties: { day: str, ...Object.fromEntries(COMPONENTS.map((k) => [k, num])) } } },
    unit: { type: 'object', properties: { operations: num, succeeded: num, totalUsd: num, costPerOperationUsd: numOrNull, costPerSuccessUsd: numOrNull } },
    runway: { type: 'object', properties: { runSpendUsd: num, weekUsd: num, avgDayUsd: num, remainingUsd: num, days: numOrNull } },
    stopConditions24h: { type: 'object', properties: { warning: num, hardStop: num, emergencyStop: num } },
    recentStops: { type: 'array', items: { type: 'object', properties: { time: str, scope: str, previous: str, state: str, reason: str } } },
  },
} as const;

function deny(reply: FastifyReply, status: number, code: string, message: string, field?: string): FastifyReply {
  return reply.status(status).send({ error: { code, message, ...(field ? { field } : {}) } });
}

function principalOf(req: FastifyRequest): PrincipalLike | undefined {
  return (req as FastifyRequest & { principal?: PrincipalLike }).principal;
}

/** Scopes the caller may see, with their state: the tenant and its runs, and `global` for an all-tenants key. */
function visibleStates(all: ReadonlyArray<{ scope: string; state: string }>, tenant: string, allTenants: boolean): Array<{ scope: string; state: string }> {
  const mine = (s: string): boolean => s === `tenant:${tenant}` || s.startsWith(`run:${tenant}/`) || (allTenants && s === 'global');
  const order = (s: string): number => (s === 'global' ? 0 : s.startsWith('tenant:') ? 1 : 2);
  const out = all.filter((x) => mine(x.scope)).map((x) => ({ scope: x.scope, state: x.state }));
  // The tenant's own scope is always listed, NORMAL when the service has not seen it yet.
  if (!out.some((x) => x.scope === `tenant:${tenant}`)) out.push({ scope: `tenant:${tenant}`, state: 'NORMAL' });
  return out.sort((a, b) => order(a.scope) - order(b.scope) || a.scope.localeCompare(b.scope));
}

export const burnPageRoutes: FastifyPluginAsync<BurnPageOptions> = async (app, opts) => {
  const page = readFileSync(join(here, 'index.html'), 'utf8');
  const script = readFileSync(join(here, 'page.js'), 'utf8');
  const chartJs = readFileSync(chartJsPath, 'utf8');
  const now = opts.now ?? Date.now;
  const hide = { hide: true } as Record<string, unknown>;

  app.get('/', { config: { public: true }, schema: hide }, async (_req, reply) => {
    void reply.type('text/html; charset=utf-8').header('content-security-policy', CSP).header('cache-control', 'no-store');
    return page;
  });
  app.get('/burn/page.js', { config: { public: true }, schema: hide }, async (_req, reply) => {
    void reply.type('text/javascript; charset=utf-8');
    return script;
  });
  app.get('/burn/chart.umd.js', { config: { public: true }, schema: hide }, async (_req, reply) => {
    void reply.type('text/javascript; charset=utf-8').header('cache-control', 'public, max-age=86400');
    return chartJs;
  });

  app.get<{ Querystring: { tenant?: string; run?: string } }>(
    '/v1/burn/data',
    {
      config: { roles: ['finance'] },
      schema: {
        summary: 'Burn of a tenant (or one run): guardrail states, daily burn with bands, composition, unit economics, runway, stop conditions',
        tags: ['reports'],
        querystring: {
          type: 'object',
          additionalProperties: false,
          properties: {
            tenant: { type: 'string', pattern: TENANT_RE.source, description: 'Default: the key\'s tenant' },
            run: { type: 'string', pattern: RUN_RE.source, description: 'One run of the tenant; default all runs' },
          },
        },
        response: { 200: burnDataSchema, 400: errorBody, 401: errorBody, 403: errorBody },
      },
    },
    async (req, reply) => {
      const p = principalOf(req);
      if (!p) return deny(reply, 401, 'FORGE_ERR_UNAUTHENTICATED', 'an API key is required: send "Authorization: Bearer <key>"');
      if (!p.roles.includes('finance') && !p.roles.includes('admin')) return deny(reply, 403, 'FORGE_ERR_FORBIDDEN_ROLE', 'this key lacks a role for this action (needs one of: finance)');
      const tenant = req.query.tenant ?? p.tenantId ?? undefined;
      if (tenant === undefined) return deny(reply, 400, 'FORGE_ERR_VALIDATION', 'tenant is required for a key bound to all tenants', 'tenant');
      if (p.tenantId !== null && tenant !== p.tenantId) return deny(reply, 403, 'FORGE_ERR_FORBIDDEN_TENANT', 'this key is bound to another tenant', 'tenant');
      const run = req.query.run;
      const scope = run === undefined ? `tenant:${tenant}` : `run:${tenant}/${run}`;
      return burnData(opts.store, { tenant, run, now: now(), states: visibleStates(opts.guardrailStates(), tenant, p.tenantId === null), bands: opts.bands(scope) });
    },
  );
};
