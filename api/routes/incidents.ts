import type { FastifyInstance, FastifyRequest } from 'fastify';
import type {} from '@fastify/swagger';
import type { Incident, IncidentLog } from '../../alerts/index.ts';
import type { LogScope } from '../../store/index.ts';
import { requireTenant } from '../auth.ts';
import { ApiError, errorBodySchema, notFound } from '../errors.ts';
import { principalOf } from '../http.ts';
import { NO_CONTROL, TENANT_ID, text } from '../schemas.ts';

export interface IncidentRoutesOptions {
  incidents: Pick<IncidentLog, 'list' | 'acknowledge' | 'resolve'>;
}

const errors = { 400: errorBodySchema, 401: errorBodySchema, 403: errorBodySchema, 404: errorBodySchema, 409: errorBodySchema };
const step = { type: 'object', properties: { actor: { type: 'string' }, at: { type: 'string' }, note: { type: 'string' } } } as const;
const incidentView = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    scope: { type: 'string' },
    tenant_id: { type: 'string' },
    status: { type: 'string', enum: ['open', 'acknowledged', 'resolved'] },
    opened_at: { type: 'string' },
    reason: { type: 'string' },
    acknowledged: step,
    resolved: step,
  },
} as const;
const idParams = { type: 'object', additionalProperties: false, required: ['incident_id'], properties: { incident_id: { type: 'string', pattern: '^inc_[0-9a-f]{24}$' } } } as const;

function view(i: Incident): Record<string, unknown> {
  const s = (x: { actor: string; at: number; note: string } | undefined) => (x ? { actor: x.actor, at: new Date(x.at).toISOString(), note: x.note } : undefined);
  return { id: i.id, scope: i.scope, tenant_id: i.tenantId, status: i.status, opened_at: new Date(i.openedAt).toISOString(), reason: i.reason, ...(i.acknowledged ? { acknowledged: s(i.acknowledged) } : {}), ...(i.resolved ? { resolved: s(i.resolved) } : {}) };
}

/** A tenant-bound key sees its tenant's incidents; an all-tenants key every one (or one tenant's). */
function scopeOf(req: FastifyRequest, tenantId?: string): LogScope {
  const p = principalOf(req);
  if (tenantId !== undefined) {
    requireTenant(p, tenantId);
    return { tenantId };
  }
  return p.tenantId === null ? { allTenants: true } : { tenantId: p.tenantId };
}

/** Incidents opened by EMERGENCY_STOPs: listed, acknowledged and resolved with a note (audited in guardrail_events). */
export async function incidentRoutes(app: FastifyInstance, opts: IncidentRoutesOptions): Promise<void> {
  app.get<{ Querystring: { tenant_id?: string; status?: Incident['status'] } }>(
    '/v1/incidents',
    {
      config: { roles: ['oncall', 'finance', 'auditor'] },
      schema: {
        tags: ['incidents'],
        summary: 'Incidents opened by EMERGENCY_STOPs (last 90 days), newest first',
        querystring: { type: 'object', additionalProperties: false, properties: { tenant_id: TENANT_ID, status: { type: 'string', enum: ['open', 'acknowledged', 'resolved'] } } },
        response: { 200: { type: 'object', properties: { incidents: { type: 'array', items: incidentView } } }, ...errors },
      },
    },
    async (req) => ({ incidents: (await opts.incidents.list(scopeOf(req, req.query.tenant_id), req.query.status ? { status: req.query.status } : {})).map(view) }),
  );

  const act = (what: 'acknowledge' | 'resolve') =>
    app.post<{ Params: { incident_id: string }; Body: { note?: string } | null }>(
      `/v1/incidents/:incident_id/${what}`,
      {
        config: { roles: ['oncall'] },
        schema: {
          tags: ['incidents'],
          summary: what === 'acknowledge' ? 'Acknowledge an open incident (audited)' : 'Resolve an incident with a note (audited)',
          params: idParams,
          body: {
            type: 'object',
            additionalProperties: false,
            ...(what === 'resolve' ? { required: ['note'] } : {}),
            properties: { note: { ...text(what === 'resolve' ? 1 : 0, 2000), pattern: NO_CONTROL } },
          },
          response: { 200: incidentView, ...errors },
        },
      },
      async (req) => {
        const p = principalOf(req);
        const scope = scopeOf(req);
        const note = req.body?.note ?? '';
        const r = what === 'acknowledge' ? await opts.incidents.acknowledge(scope, req.params.incident_id, `key:${p.name}`, note) : await opts.incidents.resolve(scope, req.params.incident_id, `key:${p.name}`, note);
        if (!r) throw notFound('incident');
        if (!r.changed) throw new ApiError('FORGE_ERR_CONFLICT', `incident is already ${r.incident.status}`, 'incident_id');
        return view(r.incident);
      },
    );
  act('acknowledge');
  act('resolve');
}
