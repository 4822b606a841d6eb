import type { FastifyInstance } from 'fastify';
import { byokModeOf, type ByokMode } from '../../../billing/index.ts';
import { ApiError, errorBodySchema } from '../../errors.ts';
import { EMPTY_BODY } from '../../schemas.ts';
import { closed, e4, e5, keyJson, keyView, providerParams, USER, userParams, modelIdSchema, type BillingRouteContext } from './shared.ts';

/** BYOK keys: list, save (tested, sealed), delete, hybrid mode, master key rotation. */
export function keyRoutes(app: FastifyInstance, ctx: BillingRouteContext): void {
  const { catalog, now, tenantOf, needVault } = ctx;
  const MODEL = modelIdSchema(catalog);

  app.get<{ Params: { tenant: string; user: string } }>(
    '/v1/billing/tenants/:tenant/users/:user/keys',
    { config: { roles: ['auditor'] }, schema: { tags: ['byok'], summary: 'A user\'s BYOK keys: provider, agent, master key id, dates (never the key nor any part of it)', params: userParams, response: { 200: { type: 'object', properties: { tenant_id: { type: 'string' }, user_id: { type: 'string' }, keys: { type: 'array', items: keyView } } }, ...e4, ...e5 } } },
    async (req) => {
      const tenant = tenantOf(req, req.params.tenant);
      return { tenant_id: tenant, user_id: req.params.user, keys: (await needVault().listKeys(tenant, req.params.user)).map(keyJson) };
    },
  );

  app.get<{ Params: { tenant: string; user: string } }>(
    '/v1/billing/tenants/:tenant/users/:user/keys/health',
    {
      config: { roles: ['auditor', 'admin', 'finance'] },
      schema: {
        tags: ['byok'],
        summary: 'The latest health of a user\'s keys as runners reported it at settle: ok, provider_error, rate_limited, expired or invalid',
        params: userParams,
        response: { 200: { type: 'object', properties: { tenant_id: { type: 'string' }, user_id: { type: 'string' }, keys: { type: 'array', items: { type: 'object', properties: { provider: { type: 'string' }, agent_id: { type: 'string' }, status: { type: 'string' }, detail: { type: 'string' }, execution_id: { type: 'string' }, at: { type: 'string' } } } } } }, ...e4, ...e5 },
      },
    },
    async (req) => {
      const tenant = tenantOf(req, req.params.tenant);
      if (!ctx.keyHealth) throw new ApiError('FORGE_ERR_BYOK_NOT_CONFIGURED', 'key health is not kept on this server');
      const rows = await ctx.keyHealth.latest(tenant, req.params.user);
      return { tenant_id: tenant, user_id: req.params.user, keys: rows.map((r) => ({ provider: r.provider, agent_id: r.agentId, status: r.status, detail: r.detail, execution_id: r.executionId, at: new Date(r.at).toISOString() })) };
    },
  );

  app.put<{ Params: { tenant: string; user: string; provider: string }; Body: { api_key: string; agent_id?: string } }>(
    '/v1/billing/tenants/:tenant/users/:user/keys/:provider',
    {
      config: { roles: ['admin'] },
      schema: {
        tags: ['byok'],
        summary: 'Save (or replace) a user\'s provider key, for all agents or one: tested with the provider first, sealed with AES-256-GCM, never returned',
        params: providerParams,
        body: closed({ api_key: { type: 'string', minLength: 8, maxLength: 512, pattern: '^[\\u0021-\\u007E]+$' }, agent_id: USER }, ['api_key'] as const),
        response: { 200: keyView, ...e4, 422: errorBodySchema, ...e5 },
      },
    },
    async (req) => {
      const tenant = tenantOf(req, req.params.tenant);
      const v = await needVault().saveKey({ tenantId: tenant, userId: req.params.user, provider: req.params.provider, apiKey: req.body.api_key, now: now(), ...(req.body.agent_id ? { agentId: req.body.agent_id } : {}) });
      return keyJson(v);
    },
  );

  app.delete<{ Params: { tenant: string; user: string; provider: string }; Querystring: { agent_id?: string } }>(
    '/v1/billing/tenants/:tenant/users/:user/keys/:provider',
    {
      config: { roles: ['admin'] },
      schema: {
        tags: ['byok'],
        summary: 'Delete a user\'s key for a provider (the default, or one agent\'s with agent_id)',
        params: providerParams,
        querystring: closed({ agent_id: USER }),
        body: EMPTY_BODY,
        response: { 200: { type: 'object', properties: { deleted: { type: 'boolean' } } }, ...e4, ...e5 },
      },
    },
    async (req) => {
      const tenant = tenantOf(req, req.params.tenant);
      const ok = await needVault().deleteKey(tenant, req.params.user, req.params.provider, req.query.agent_id ?? '*');
      if (!ok) throw new ApiError('FORGE_ERR_NOT_FOUND', 'no such key', 'provider');
      return { deleted: true };
    },
  );

  app.put<{ Params: { tenant: string; user: string }; Body: { mode: ByokMode['mode']; models?: string[] } }>(
    '/v1/billing/tenants/:tenant/users/:user/byok-mode',
    {
      config: { roles: ['admin'] },
      schema: {
        tags: ['byok'],
        summary: 'Hybrid mode: the user\'s keys for all models (all), for the listed models only (models), or never (off)',
        params: userParams,
        body: closed({ mode: { type: 'string', enum: ['all', 'models', 'off'] }, models: { type: 'array', maxItems: 200, uniqueItems: true, items: MODEL } }, ['mode'] as const),
        response: { 200: { type: 'object', properties: { mode: { type: 'string' }, models: { type: 'array', items: { type: 'string' } } } }, ...e4, ...e5 },
      },
    },
    async (req) => {
      const tenant = tenantOf(req, req.params.tenant);
      const m = byokModeOf(req.body.mode, req.body.models);
      await needVault().setByokMode(tenant, req.params.user, m);
      return m;
    },
  );

  app.post(
    '/v1/billing/vault/rotate',
    {
      config: { roles: ['admin'] },
      schema: { tags: ['byok'], summary: 'Re-seal every stored key under the active master key (FORGE_VAULT_MASTER_KEY; the old one stays in FORGE_VAULT_PREVIOUS_KEYS until this returns)', body: EMPTY_BODY, response: { 200: { type: 'object', properties: { resealed: { type: 'integer' }, active_key_id: { type: 'string' } } }, ...e4, ...e5 } },
    },
    async (req) => {
      ctx.requirePlatformKey(req, 'rotation touches every tenant\'s keys: it needs an admin key bound to all tenants');
      const vault = needVault();
      if (!ctx.vaultKeys) throw new ApiError('FORGE_ERR_BYOK_NOT_CONFIGURED', 'no master keys configured');
      const n = await vault.rotate(ctx.vaultKeys);
      return { resealed: n, active_key_id: vault.activeKeyId };
    },
  );
}
