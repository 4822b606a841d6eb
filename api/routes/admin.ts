import type {} from '@fastify/swagger';
import type { FastifyInstance } from 'fastify';
import { BandsConfigError, bandsFromModelKeys, microsToUsd, thresholdsOf, type Bands, type BudgetVersion, type ScopeKey } from '../../rules/index.ts';
import { ROLES, type KeyStore, type Role } from '../auth.ts';
import { ApiError, errorBodySchema } from '../errors.ts';
import type { Guardrail } from '../../guard/index.ts';
import { principalOf, scopeParam } from '../http.ts';
import { DATE_TIME, SCOPE, TENANT_ID, text, USD } from '../schemas.ts';

const scopeParams = { type: 'object', additionalProperties: false, required: ['scope'], properties: { scope: SCOPE } } as const;

const errors = { 400: errorBodySchema, 401: errorBodySchema, 403: errorBodySchema, 404: errorBodySchema };
const bandsSchema = {
  type: 'object',
  properties: {
    B_day_soft: { type: 'string' }, B_day_hard: { type: 'string' }, B_week_soft: { type: 'string' }, B_week_hard: { type: 'string' },
    B_run_cap: { type: 'string' }, B_unit_cap: { type: 'string' }, K: { type: 'integer' }, emergency_day_usd: { type: 'string' },
  },
} as const;

export function bandsJson(b: Bands) {
  return {
    B_day_soft: microsToUsd(b.daySoft), B_day_hard: microsToUsd(b.dayHard), B_week_soft: microsToUsd(b.weekSoft), B_week_hard: microsToUsd(b.weekHard),
    B_run_cap: microsToUsd(b.runCap), B_unit_cap: microsToUsd(b.unitCap), K: b.k, emergency_day_usd: microsToUsd(thresholdsOf(b).dayEmergency),
  };
}

export async function adminRoutes(
  app: FastifyInstance,
  opts: { guardrail: Guardrail; keys: KeyStore; now: () => number },
): Promise<void> {
  const versionSchema = { type: 'object', properties: { scope: { type: 'string' }, version: { type: 'integer' }, actor: { type: 'string' }, reason: { type: 'string' }, at: { type: 'string' }, bands: bandsSchema } } as const;
  const view = (scope: ScopeKey, v: BudgetVersion) => ({ scope, version: v.version, actor: v.actor, reason: v.reason, at: new Date(v.at).toISOString(), bands: bandsJson(v.bands) });

  app.get<{ Params: { scope: string } }>(
    '/v1/budgets/:scope',
    { config: { roles: ['finance', 'oncall', 'auditor', 'runner'] }, schema: { tags: ['budgets'], summary: 'Current bands of a scope (own or inherited) and their version', params: scopeParams, response: { 200: versionSchema, ...errors } } },
    async (req) => {
      const scope = scopeParam(req, req.params.scope);
      return view(scope, opts.guardrail.budget(scope));
    },
  );

  app.get<{ Params: { scope: string } }>(
    '/v1/budgets/:scope/versions',
    { config: { roles: ['finance', 'oncall', 'auditor'] }, schema: { tags: ['budgets'], summary: 'Every version of a scope\'s bands', params: scopeParams, response: { 200: { type: 'object', properties: { versions: { type: 'array', items: versionSchema } } }, ...errors } } },
    async (req) => {
      const scope = scopeParam(req, req.params.scope);
      return { versions: opts.guardrail.budgetHistory(scope).map((v) => view(scope, v)) };
    },
  );

  app.put<{ Params: { scope: string }; Body: Record<string, string | number> & { reason: string } }>(
    '/v1/budgets/:scope',
    {
      config: { roles: ['admin'] },
      schema: {
        tags: ['budgets'],
        summary: 'Change a scope\'s bands (admin; a new version; audited). Keys not given keep their current value.',
        params: scopeParams,
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['reason'],
          properties: { reason: text(3, 1000), B_day_soft: USD, B_day_hard: USD, B_week_soft: USD, B_week_hard: USD, B_run_cap: USD, B_unit_cap: USD, K: { type: 'integer', minimum: 1, maximum: 10000 } },
        },
        response: { 200: versionSchema, ...errors },
      },
    },
    async (req) => {
      const scope = scopeParam(req, req.params.scope);
      const { reason, ...changes } = req.body;
      const merged: Record<string, string | number> = { ...bandsJson(opts.guardrail.budget(scope).bands), ...changes };
      delete merged.emergency_day_usd;
      let bands: Bands;
      try {
        bands = bandsFromModelKeys(merged);
      } catch (e) {
        if (e instanceof BandsConfigError) throw new ApiError('FORGE_ERR_VALIDATION', `${e.key} ${e.problem}`, e.key);
        throw e;
      }
      const p = principalOf(req);
      const actor = `${p.name} (${p.keyId})`;
      // In force at once here, on every other process through the halt bus, and after a restart (audited).
      const v = await opts.guardrail.changeBudget(scope, bands, actor, reason);
      return view(scope, v);
    },
  );

  app.post<{ Body: { name: string; roles: Role[]; tenant_id?: string | null; expires_at?: string | null } }>(
    '/v1/keys',
    {
      config: { roles: ['admin'] },
      schema: {
        tags: ['keys'],
        summary: 'Create an API key (shown once; stored hashed)',
        body: {
          type: 'object', additionalProperties: false, required: ['name', 'roles'],
          properties: { name: text(1, 100), roles: { type: 'array', minItems: 1, maxItems: ROLES.length, uniqueItems: true, items: { type: 'string', enum: [...ROLES] } }, tenant_id: { anyOf: [TENANT_ID, { type: 'null' }] }, expires_at: { anyOf: [DATE_TIME, { type: 'null' }] } },
        },
        response: { 201: { type: 'object', properties: { id: { type: 'string' }, key: { type: 'string' }, expires_at: { type: 'string' } } }, ...errors },
      },
    },
    async (req, reply) => {
      const p = principalOf(req);
      const tenantId = req.body.tenant_id ?? null;
      // A key bound to one tenant can only make keys for that tenant.
      if (p.tenantId !== null && tenantId !== p.tenantId) throw new ApiError('FORGE_ERR_FORBIDDEN_TENANT', 'a tenant-bound admin can only create keys for its tenant', 'tenant_id');
      const expiresAt = req.body.expires_at ? Date.parse(req.body.expires_at) : null;
      const made = await opts.keys.create({ name: req.body.name, roles: req.body.roles, tenantId, expiresAt, actor: `${p.name} (${p.keyId})` });
      void reply.status(201);
      return { id: made.id, key: made.key, ...(made.expiresAt ? { expires_at: made.expiresAt } : {}) };
    },
  );
}
