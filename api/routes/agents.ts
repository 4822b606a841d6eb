import type {} from '@fastify/swagger';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { AGENT_MANIFEST, type AgentDetail, type AgentStore } from '../../eval/index.ts';
import { ApiError, errorBodySchema } from '../errors.ts';
import { principalOf } from '../http.ts';
import { TENANT_ID, text } from '../schemas.ts';

const errors = { 400: errorBodySchema, 401: errorBodySchema, 403: errorBodySchema, 404: errorBodySchema, 413: errorBodySchema, 422: errorBodySchema };

export const AGENT_SCHEMA = {
  type: 'object',
  required: ['agent_id', 'tenant', 'name', 'kind', 'size_bytes', 'created_at'],
  properties: {
    agent_id: { type: 'string', description: 'sha256 hex of the content (ZIP bytes or image reference)' },
    tenant: { type: 'string' },
    name: { type: 'string' },
    kind: { type: 'string', enum: ['zip', 'image'] },
    size_bytes: { type: 'integer' },
    created_at: { type: 'string', format: 'date-time' },
    command: { type: 'array', items: { type: 'string' } },
    ref: { type: 'string' },
    file_count: { type: 'integer' },
  },
} as const;

// Any short id is accepted here: one that is not an agent's (sha256 hex) is simply not found.
const AGENT_ID = { type: 'string', minLength: 1, maxLength: 128, pattern: '^[^\\u0000-\\u001F\\u007F-\\u009F]*$' } as const;

/** The tenant a read names: the key's own, or (a key bound to every tenant) the `tenant_id` it passes. */
export function tenantOfRead(req: FastifyRequest, given: string | undefined): string {
  const p = principalOf(req);
  const t = given ?? p.tenantId ?? undefined;
  if (t === undefined) throw new ApiError('FORGE_ERR_VALIDATION', 'tenant_id is required with a key bound to every tenant', 'tenant_id');
  return t;
}

const view = (a: AgentDetail) => a;

/** Agents for evaluation: upload (a ZIP, base64 in JSON, or an image reference), list, get. */
export async function agentRoutes(app: FastifyInstance, opts: { agents: AgentStore }): Promise<void> {
  app.post<{ Body: { tenant_id: string; name: string; kind: 'zip' | 'image'; zip_base64?: string; ref?: string } }>(
    '/v1/agents',
    {
      config: { roles: ['runner', 'admin'] },
      schema: {
        tags: ['eval'],
        summary: `Upload an agent: a ZIP (base64 in zip_base64, with ${AGENT_MANIFEST} = {"command": [...]} at its root; no symlinks, no absolute or ".." paths; size and file-count limits) or a container image reference (ref). Stored by content hash: the same content again answers the same agent.`,
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['tenant_id', 'name', 'kind'],
          properties: {
            tenant_id: TENANT_ID,
            name: text(1, 128),
            kind: { type: 'string', enum: ['zip', 'image'] },
            // Canonical base64 (padded). No maxLength: the body limit bounds it, the agent store's limits answer 413.
            zip_base64: { type: 'string', pattern: '^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$' },
            ref: { type: 'string', minLength: 1, maxLength: 255 },
          },
        },
        response: { 201: AGENT_SCHEMA, ...errors },
      },
    },
    async (req, reply) => {
      const b = req.body;
      let agent: AgentDetail;
      if (b.kind === 'zip') {
        if (b.zip_base64 === undefined) throw new ApiError('FORGE_ERR_VALIDATION', 'kind zip needs zip_base64', 'zip_base64');
        if (b.ref !== undefined) throw new ApiError('FORGE_ERR_VALIDATION', 'ref belongs to kind image', 'ref');
        agent = await opts.agents.put(b.tenant_id, { kind: 'zip', name: b.name, bytes: Buffer.from(b.zip_base64, 'base64') });
      } else {
        if (b.ref === undefined) throw new ApiError('FORGE_ERR_VALIDATION', 'kind image needs ref', 'ref');
        if (b.zip_base64 !== undefined) throw new ApiError('FORGE_ERR_VALIDATION', 'zip_base64 belongs to kind zip', 'zip_base64');
        agent = await opts.agents.put(b.tenant_id, { kind: 'image', name: b.name, ref: b.ref });
      }
      void reply.status(201);
      return view(agent);
    },
  );

  app.get<{ Querystring: { tenant_id?: string } }>(
    '/v1/agents',
    {
      config: { roles: ['runner', 'finance', 'auditor', 'admin'] },
      schema: {
        tags: ['eval'],
        summary: "The tenant's agents, newest first (tenant_id: required with a key bound to every tenant)",
        querystring: { type: 'object', additionalProperties: false, properties: { tenant_id: TENANT_ID } },
        response: { 200: { type: 'object', properties: { agents: { type: 'array', items: AGENT_SCHEMA } } }, ...errors },
      },
    },
    async (req) => ({ agents: (await opts.agents.list(tenantOfRead(req, req.query.tenant_id))).map(view) }),
  );

  app.get<{ Params: { id: string }; Querystring: { tenant_id?: string } }>(
    '/v1/agents/:id',
    {
      config: { roles: ['runner', 'finance', 'auditor', 'admin'] },
      schema: {
        tags: ['eval'],
        summary: 'One agent of the tenant',
        params: { type: 'object', required: ['id'], properties: { id: AGENT_ID } },
        querystring: { type: 'object', additionalProperties: false, properties: { tenant_id: TENANT_ID } },
        response: { 200: AGENT_SCHEMA, ...errors },
      },
    },
    async (req) => {
      const a = await opts.agents.get(tenantOfRead(req, req.query.tenant_id), req.params.id);
      if (!a) throw new ApiError('FORGE_ERR_NOT_FOUND', `agent ${req.params.id} not found`, 'id');
      return view(a);
    },
  );
}
