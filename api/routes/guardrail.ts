import type { FastifyInstance } from 'fastify';
import type {} from '@fastify/swagger';
import { microsToUsd } from '../../rules/index.ts';
import { requireTenant } from '../auth.ts';
import { errorBodySchema } from '../errors.ts';
import type { BoundsOutcome, TaskBounds } from '../../collector/index.ts';
import { scopesOfReservation, usdToMicrosField, type Guardrail } from '../../guard/index.ts';
import { ApiError } from '../errors.ts';
import { principalOf, scopeParam } from '../http.ts';
import { DATE_TIME, RUN_ID, SCOPE, TENANT_ID as ID, text, USD } from '../schemas.ts';
import { isoOf, timeField } from '../time.ts';

const errors = { 400: errorBodySchema, 401: errorBodySchema, 403: errorBodySchema, 404: errorBodySchema, 409: errorBodySchema, 429: errorBodySchema, 503: errorBodySchema };
const scopeParams = { type: 'object', additionalProperties: false, required: ['scope'], properties: { scope: SCOPE } } as const;

const band = { type: 'object', properties: { value_usd: { type: 'string' }, limit_usd: { type: 'string' }, used_ratio: { type: ['number', 'null'] } } } as const;
const guardrailView = {
  type: 'object',
  properties: {
    scope: { type: 'string' },
    state: { type: 'string', enum: ['NORMAL', 'WARNING', 'HARD_STOP', 'EMERGENCY_STOP'] },
    since: { type: 'string' },
    seq: { type: 'integer' },
    acknowledged: { type: 'boolean' },
    waived: { type: 'array', items: { type: 'string' } },
    conditions: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          id: { type: 'string' }, level: { type: 'string' }, metric: { type: 'string' }, value: { type: 'string' }, threshold: { type: 'string' },
          unit: { type: 'string' }, top_component: { type: 'string' }, waived: { type: 'boolean' },
        },
      },
    },
    spend: {
      type: 'object',
      properties: {
        day_usd: { type: 'string' }, week_usd: { type: 'string' }, run_usd: { type: 'string' }, reserved_usd: { type: 'string' },
        open_reservations: { type: 'integer' }, tasks_today: { type: 'integer' }, failed_today: { type: 'integer' },
      },
    },
    bands: {
      type: 'object',
      properties: {
        day_soft: band, day_hard: band, day_emergency: band, week_soft: band, week_hard: band, run_cap: band,
        unit_cap: { type: 'object', properties: { limit_usd: { type: 'string' }, consecutive_at_cap: { type: 'integer' }, k: { type: 'integer' } } },
      },
    },
  },
} as const;

const DECIMAL = { type: 'string', pattern: '^\\d{1,12}(\\.\\d{1,9})?$' } as const;
const TOKENS = { type: 'integer', minimum: 0, maximum: 100_000_000 } as const;
/** What a task can cost at most: each term priced from the price book and reserved in full. */
const boundsSchema = {
  type: 'object',
  additionalProperties: false,
  minProperties: 1,
  properties: {
    evaluation_fee_usd: USD,
    llm: {
      type: 'array',
      minItems: 1,
      maxItems: 64,
      items: { type: 'object', additionalProperties: false, required: ['model', 'prompt_tokens', 'max_tokens'], properties: { model: text(1, 128), prompt_tokens: TOKENS, max_tokens: TOKENS } },
    },
    gas_limit: { type: 'integer', minimum: 0, maximum: 1_000_000_000 },
    max_fee_gwei: DECIMAL,
    compute_hours: DECIMAL,
    environment: text(1, 128),
  },
} as const;

/** What a refused admission or top-up answers: the state, the scope, why, and when to ask again. */
const DENY_PROPERTIES = {
  state: { type: 'string' },
  scope: { type: 'string' },
  reason: { type: 'string' },
  retry_after_ms: { type: ['integer', 'null'] },
} as const;

/**
 * A one-entry memo of a conversion: a runner's admissions repeat the same amounts (its estimate, in and
 * out), and each conversion is a regular expression and a few strings. A conversion that throws is not kept.
 */
function lastOf<A, R>(convert: (a: A) => R): (a: A) => R {
  let has = false;
  let key: A | undefined;
  let value: R | undefined;
  return (a) => {
    if (!has || a !== key) {
      value = convert(a);
      key = a;
      has = true;
    }
    return value as R;
  };
}

function denyBody(d: { state: string; scope: string; reason: string; retryAfterMs: number | null }) {
  return { decision: 'deny' as const, state: d.state, scope: d.scope, reason: d.reason, retry_after_ms: d.retryAfterMs };
}

interface BoundsBody {
  evaluation_fee_usd?: string | number;
  llm?: Array<{ model: string; prompt_tokens: number; max_tokens: number }>;
  gas_limit?: number;
  max_fee_gwei?: string;
  compute_hours?: string;
  environment?: string;
}

function toBounds(b: BoundsBody): TaskBounds {
  return {
    ...(b.evaluation_fee_usd !== undefined ? { evaluationFeeUsd: String(b.evaluation_fee_usd) } : {}),
    ...(b.llm ? { llm: b.llm.map((c) => ({ model: c.model, promptTokens: c.prompt_tokens, maxTokens: c.max_tokens })) } : {}),
    ...(b.gas_limit !== undefined ? { gasLimit: b.gas_limit } : {}),
    ...(b.max_fee_gwei !== undefined ? { maxFeeGwei: b.max_fee_gwei } : {}),
    ...(b.compute_hours !== undefined ? { computeHours: b.compute_hours } : {}),
    ...(b.environment !== undefined ? { environment: b.environment } : {}),
  };
}

export async function guardrailRoutes(
  app: FastifyInstance,
  opts: { guardrail: Guardrail; now: () => number; priceBounds?: (b: TaskBounds) => BoundsOutcome },
): Promise<void> {
  const g = opts.guardrail;
  const estimateMicros = lastOf((v: string | number) => usdToMicrosField(v, 'estimated_cost_usd'));
  const usdText = lastOf(microsToUsd);

  app.get<{ Params: { scope: string } }>(
    '/v1/guardrail/:scope',
    {
      config: { roles: ['runner', 'finance', 'oncall', 'auditor'] },
      schema: { tags: ['guardrail'], summary: 'State of a scope: conditions that hold, spend against every band, since when', params: scopeParams, response: { 200: guardrailView, ...errors } },
    },
    async (req) => g.view(scopeParam(req, req.params.scope)),
  );

  app.post<{ Body: { tenant_id: string; run_id: string; task_type: string; estimated_cost_usd?: string | number; bounds?: BoundsBody } }>(
    '/v1/admissions',
    {
      config: { roles: ['runner'] },
      schema: {
        tags: ['admissions'],
        summary: 'Reserve a task\'s estimated cost before starting it',
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['tenant_id', 'run_id', 'task_type'],
          properties: { tenant_id: ID, run_id: RUN_ID, task_type: text(1, 128), estimated_cost_usd: USD, bounds: boundsSchema },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              decision: { type: 'string', enum: ['allow', 'deny'] },
              reservation_id: { type: 'string' },
              expires_at: { type: 'string' },
              estimated_cost_usd: { type: 'string' },
              estimate_source: { type: 'string', enum: ['bounds', 'runner', 'runner_learned', 'learned_p99', 'unit_cap'] },
              learned_factor: { type: 'number', description: 'the factor the runner\'s estimate was scaled by (the task type\'s high quantile of actual / estimate)' },
              unreserved: { type: 'boolean', description: 'true when admitted without a reservation (ledger unreachable, FORGE_ADMISSIONS_ON_LEDGER_FAILURE=open)' },
              ...DENY_PROPERTIES,
            },
          },
          ...errors,
        },
      },
    },
    async (req) => {
      const b = req.body;
      requireTenant(principalOf(req), b.tenant_id);
      let estimate = b.estimated_cost_usd === undefined ? undefined : estimateMicros(b.estimated_cost_usd);
      let source: 'runner' | 'bounds' = 'runner';
      if (b.bounds) {
        // What the task can cost at most, priced from the price book: reserved in full (a term that cannot
        // be priced is refused, never taken as zero).
        if (!opts.priceBounds) throw new ApiError('FORGE_ERR_VALIDATION', 'bounds cannot be priced by this server (no price book)', 'bounds');
        const priced = opts.priceBounds(toBounds(b.bounds));
        if (!priced.ok) throw new ApiError('FORGE_ERR_VALIDATION', `${priced.field}: ${priced.reason}`, priced.field);
        estimate = Math.max(priced.micros, estimate ?? 0);
        source = 'bounds';
      }
      const d = await g.admit(estimate === undefined ? { tenantId: b.tenant_id, runId: b.run_id, taskType: b.task_type } : { tenantId: b.tenant_id, runId: b.run_id, taskType: b.task_type, estimatedMicros: estimate, estimateSource: source });
      if (d.decision === 'deny' && d.intakePaused) {
        const p = d.intakePaused;
        throw new ApiError('FORGE_ERR_INTAKE_PAUSED', `the intake of tenant "${b.tenant_id}" is paused since ${new Date(p.since).toISOString()} (${p.reason}); tasks in flight go on; an operator resumes it (POST /v1/tenants/${b.tenant_id}/intake/resume)`, 'tenant_id');
      }
      if (d.decision === 'allow') {
        // Fields left undefined are left out by the response schema's serializer.
        return {
          decision: 'allow',
          reservation_id: d.reservationId,
          expires_at: isoOf(d.expiresAt),
          estimated_cost_usd: usdText(d.estimatedMicros),
          estimate_source: d.estimateSource,
          learned_factor: d.learnedFactor,
          unreserved: d.unreserved,
        };
      }
      return denyBody(d);
    },
  );

  app.post<{ Params: { id: string }; Body: { actual_cost_usd: string | number; event_id: string; finalized_at?: string } }>(
    '/v1/admissions/:id/settle',
    {
      config: { roles: ['runner'] },
      schema: {
        tags: ['admissions'],
        summary: 'Settle a reservation with the task\'s actual cost',
        params: { type: 'object', additionalProperties: false, required: ['id'], properties: { id: { type: 'string', pattern: '^rsv_[A-Za-z0-9_-]{1,400}\\.[A-Za-z0-9_-]{12,40}$' } } },
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['actual_cost_usd', 'event_id'],
          properties: { actual_cost_usd: USD, event_id: text(1, 128), finalized_at: DATE_TIME },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              status: { type: 'string', enum: ['settled', 'unknown'] },
              reserved_usd: { type: 'string', description: 'what the reservation held' },
              overrun: { type: 'boolean', description: 'true when the actual cost is above what was reserved (no top-up asked): booked, flagged and re-evaluated' },
            },
          },
          ...errors,
        },
      },
    },
    async (req) => {
      const who = scopesOfReservation(req.params.id);
      if (!who) throw new ApiError('FORGE_ERR_NOT_FOUND', 'reservation not found', 'id');
      requireTenant(principalOf(req), who.tenantId, 'id');
      const amount = usdToMicrosField(req.body.actual_cost_usd, 'actual_cost_usd');
      const at = req.body.finalized_at ? timeField(req.body.finalized_at, 'finalized_at', opts.now()) : opts.now();
      const r = await g.settle(req.params.id, { eventId: req.body.event_id, amountMicros: amount, eventTime: at });
      return { status: r.status, reserved_usd: microsToUsd(r.reservedMicros), overrun: r.overrun };
    },
  );

  app.post<{ Params: { id: string }; Body: { additional_usd: string | number } }>(
    '/v1/admissions/:id/extend',
    {
      config: { roles: ['runner'] },
      schema: {
        tags: ['admissions'],
        summary: 'Top up an open reservation before spending more than it holds (refused at the cap like an admission)',
        params: { type: 'object', additionalProperties: false, required: ['id'], properties: { id: { type: 'string', pattern: '^rsv_[A-Za-z0-9_-]{1,400}\\.[A-Za-z0-9_-]{12,40}$' } } },
        body: { type: 'object', additionalProperties: false, required: ['additional_usd'], properties: { additional_usd: USD } },
        response: {
          200: {
            type: 'object',
            properties: {
              decision: { type: 'string', enum: ['allow', 'deny'] },
              reserved_usd: { type: 'string' },
              expires_at: { type: 'string' },
              ...DENY_PROPERTIES,
            },
          },
          ...errors,
        },
      },
    },
    async (req) => {
      const who = scopesOfReservation(req.params.id);
      if (!who) throw new ApiError('FORGE_ERR_NOT_FOUND', 'reservation not found', 'id');
      requireTenant(principalOf(req), who.tenantId, 'id');
      const d = await g.extend(req.params.id, usdToMicrosField(req.body.additional_usd, 'additional_usd'));
      if (d.decision === 'allow') return { decision: 'allow', reserved_usd: microsToUsd(d.reservedMicros), expires_at: new Date(d.expiresAt).toISOString() };
      return denyBody(d);
    },
  );

  const actionBody = (reasonRequired: boolean) =>
    ({
      type: reasonRequired ? 'object' : ['object', 'null'],
      additionalProperties: false,
      required: reasonRequired ? ['reason'] : [],
      properties: { reason: text(reasonRequired ? 3 : 0, 1000) },
    }) as const;
  const actionResponse = { 200: { type: 'object', properties: { scope: { type: 'string' }, state: { type: 'string' }, waived: { type: 'array', items: { type: 'string' } } } }, ...errors };

  app.post<{ Params: { scope: string }; Body: { reason?: string } }>(
    '/v1/guardrail/:scope/acknowledge',
    { config: { roles: ['oncall'] }, schema: { tags: ['operator'], summary: 'Acknowledge a WARNING (stops re-notification; audited)', params: scopeParams, body: actionBody(false), response: actionResponse } },
    async (req) => {
      const scope = scopeParam(req, req.params.scope);
      const p = principalOf(req);
      return { scope, ...(await g.acknowledge(scope, `${p.name} (${p.keyId})`, req.body?.reason || 'acknowledged')) };
    },
  );

  app.post<{ Params: { scope: string }; Body: { reason: string } }>(
    '/v1/guardrail/:scope/lift',
    { config: { roles: ['oncall'] }, schema: { tags: ['operator'], summary: 'Lift a HARD_STOP or EMERGENCY_STOP (reason required; audited)', params: scopeParams, body: actionBody(true), response: actionResponse } },
    async (req) => {
      const scope = scopeParam(req, req.params.scope);
      const p = principalOf(req);
      return { scope, ...(await g.lift(scope, `${p.name} (${p.keyId})`, req.body.reason)) };
    },
  );

  // Scopes a caller may list: its own tenant's, or all.
  app.get(
    '/v1/guardrail',
    { config: { roles: ['runner', 'finance', 'oncall', 'auditor'] }, schema: { tags: ['guardrail'], summary: 'States of every known scope the key may see', response: { 200: { type: 'object', properties: { scopes: { type: 'array', items: { type: 'object', properties: { scope: { type: 'string' }, state: { type: 'string' } } } } } }, ...errors } } },
    async (req) => {
      const p = principalOf(req);
      const visible = g.knownScopes().filter((s) => p.tenantId === null || s === `tenant:${p.tenantId}` || s.startsWith(`run:${p.tenantId}/`));
      return { scopes: visible.sort().map((scope) => ({ scope, state: g.effectiveState(scope) })) };
    },
  );
}
