import type {} from '@fastify/swagger';
import type { FastifyInstance } from 'fastify';
import type { IntakeGate, IntakeStatus } from '../../guard/index.ts';
import { errorBodySchema } from '../errors.ts';
import { principalOf } from '../http.ts';
import { TENANT_ID, text } from '../schemas.ts';

const errors = { 400: errorBodySchema, 401: errorBodySchema, 403: errorBodySchema, 404: errorBodySchema, 409: errorBodySchema };
// `tenant` in the path: the auth hook checks the caller may act on it, and that it exists.
const params = { type: 'object', additionalProperties: false, required: ['tenant'], properties: { tenant: TENANT_ID } } as const;
const intakeView = {
  type: 'object',
  properties: {
    tenant_id: { type: 'string' },
    paused: { type: 'boolean' },
    since: { type: ['string', 'null'] },
    seq: { type: 'integer' },
    actor: { type: 'string' },
    reason: { type: 'string' },
  },
} as const;

function view(s: IntakeStatus) {
  return { tenant_id: s.tenantId, paused: s.paused, since: s.seq > 0 ? new Date(s.since).toISOString() : null, seq: s.seq, actor: s.actor, reason: s.reason };
}

/** A tenant's intake: paused by an execution spike (admissions answer 429 FORGE_ERR_INTAKE_PAUSED), resumed by an operator. */
export async function intakeRoutes(app: FastifyInstance, opts: { intake: Pick<IntakeGate, 'status' | 'resume'> }): Promise<void> {
  app.get<{ Params: { tenant: string } }>(
    '/v1/tenants/:tenant/intake',
    {
      config: { roles: ['runner', 'finance', 'oncall', 'auditor'] },
      schema: { tags: ['tenants'], summary: 'Whether the tenant\'s intake is paused, since when, by whom and why', params, response: { 200: intakeView, ...errors } },
    },
    async (req) => view(opts.intake.status(req.params.tenant)),
  );

  app.post<{ Params: { tenant: string }; Body: { reason: string } }>(
    '/v1/tenants/:tenant/intake/resume',
    {
      config: { roles: ['oncall'] },
      schema: {
        tags: ['operator'],
        summary: 'Resume a paused tenant\'s intake (reason required; audited with the actor). 409 when it is not paused.',
        params,
        body: { type: 'object', additionalProperties: false, required: ['reason'], properties: { reason: text(3, 1000) } },
        response: { 200: intakeView, ...errors },
      },
    },
    async (req) => {
      const p = principalOf(req);
      return view(await opts.intake.resume(req.params.tenant, `${p.name} (${p.keyId})`, req.body.reason));
    },
  );
}
