import type {} from '@fastify/swagger';
import type { FastifyInstance } from 'fastify';
import { ApiError, errorBodySchema } from '../errors.ts';
import { principalOf } from '../http.ts';
import { TENANT_ID, text } from '../schemas.ts';
import type { TenantRegistry } from '../tenants.ts';

const errors = { 400: errorBodySchema, 401: errorBodySchema, 403: errorBodySchema, 404: errorBodySchema, 409: errorBodySchema };

/** Tenants: a tenant exists before anything is done in its name (bands file, or created here). */
export async function tenantRoutes(app: FastifyInstance, opts: { tenants: TenantRegistry }): Promise<void> {
  app.post<{ Body: { tenant_id: string; reason: string } }>(
    '/v1/tenants',
    {
      config: { roles: ['admin'], allTenants: true, newTenant: true },
      schema: {
        tags: ['tenants'],
        summary: 'Create a tenant (admin, a key bound to all tenants; audited: who, why, when). 409 when it exists.',
        body: { type: 'object', additionalProperties: false, required: ['tenant_id', 'reason'], properties: { tenant_id: TENANT_ID, reason: text(3, 1000) } },
        response: { 201: { type: 'object', properties: { tenant_id: { type: 'string' }, created: { type: 'boolean' } } }, ...errors },
      },
    },
    async (req, reply) => {
      const p = principalOf(req);
      if (!(await opts.tenants.create(req.body.tenant_id, `${p.name} (${p.keyId})`, req.body.reason))) {
        throw new ApiError('FORGE_ERR_CONFLICT', `tenant "${req.body.tenant_id}" already exists`, 'tenant_id');
      }
      void reply.status(201);
      return { tenant_id: req.body.tenant_id, created: true };
    },
  );

  app.get(
    '/v1/tenants',
    {
      config: { roles: ['finance', 'oncall', 'auditor'], allTenants: true },
      schema: {
        tags: ['tenants'],
        summary: 'Every tenant Forge knows (a key bound to all tenants)',
        response: { 200: { type: 'object', properties: { tenants: { type: 'array', items: { type: 'string' } } } }, ...errors },
      },
    },
    async () => ({ tenants: await opts.tenants.list() }),
  );
}
