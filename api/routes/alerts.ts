import type { FastifyInstance } from 'fastify';
import type {} from '@fastify/swagger';
import type { AlertDispatcher } from '../../alerts/index.ts';
import { requireTenant } from '../auth.ts';
import { ApiError, errorBodySchema } from '../errors.ts';
import { principalOf } from '../http.ts';
import { RUN_ID, TENANT_ID } from '../schemas.ts';

export interface AlertRoutesOptions {
  /** The dispatcher; absent when no alerts file is configured (the report is then accepted and dropped). */
  alerts?: Pick<AlertDispatcher, 'raise'>;
}

const errors = { 400: errorBodySchema, 401: errorBodySchema, 403: errorBodySchema, 404: errorBodySchema };
const TASK_ID = { type: 'string', pattern: '^[A-Za-z0-9._:-]{1,128}$' } as const;

/** Alerts raised by other processes: a runner reports a hung task it is killing, and on-call is paged. */
export async function alertRoutes(app: FastifyInstance, opts: AlertRoutesOptions): Promise<void> {
  app.post<{ Body: { tenant_id: string; run_id: string; task_id: string; silent_for_ms: number } }>(
    '/v1/alerts/hung-tasks',
    {
      config: { roles: ['runner'] },
      schema: {
        tags: ['alerts'],
        summary: 'A runner reports a hung task (no heartbeat past its timeout; being killed): routes.hung_task is alerted, once per task and day',
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['tenant_id', 'run_id', 'task_id', 'silent_for_ms'],
          properties: { tenant_id: TENANT_ID, run_id: RUN_ID, task_id: TASK_ID, silent_for_ms: { type: 'integer', minimum: 0, maximum: 31_536_000_000 } },
        },
        response: {
          202: {
            type: 'object',
            properties: {
              outcome: { type: 'string', enum: ['dispatched', 'ignored', 'not_configured'] },
              dedup_keys: { type: 'array', items: { type: 'string' } },
              delivered: { type: 'integer', description: 'destinations that took it now (duplicates and failures are not counted)' },
            },
          },
          ...errors,
        },
      },
    },
    async (req, reply) => {
      const b = req.body;
      requireTenant(principalOf(req), b.tenant_id);
      void reply.status(202);
      if (!opts.alerts) return { outcome: 'not_configured', dedup_keys: [], delivered: 0 };
      const r = await opts.alerts.raise({ kind: 'hung_task', tenantId: b.tenant_id, runId: b.run_id, taskId: b.task_id, silentForMs: b.silent_for_ms });
      if (r.outcome === 'invalid') throw new ApiError('FORGE_ERR_VALIDATION', r.error.message, r.error.field);
      if (r.outcome === 'ignored') return { outcome: 'ignored', dedup_keys: [], delivered: 0 };
      return { outcome: 'dispatched', dedup_keys: r.dedupKeys, delivered: r.deliveries.filter((d) => d.status === 'delivered').length };
    },
  );
}
