import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { parseScope, type ScopeKey } from '../rules/index.ts';
import { requireRole, requireTenant, type KeyStore, type Principal, type Role } from './auth.ts';
import { ApiError, ERRORS, type ErrorBody, type ErrorCode } from './errors.ts';

declare module 'fastify' {
  interface FastifyRequest {
    principal?: Principal;
  }
  interface FastifyContextConfig {
    /** Roles allowed on the route (admin always is); `public: true` routes skip authentication. */
    roles?: readonly Role[];
    public?: boolean;
  }
}

/** The authenticated principal of a request (routes that are not public always have one). */
export function principalOf(req: FastifyRequest): Principal {
  if (!req.principal) throw new ApiError('FORGE_ERR_UNAUTHENTICATED', 'an API key is required');
  return req.principal;
}

/** Authentication (onRequest) and role checks (preHandler) for every non-public route. */
export function installAuth(app: FastifyInstance, keys: KeyStore): void {
  app.addHook('onRequest', async (req) => {
    const cfg = req.routeOptions.config;
    if (cfg?.public || !req.routeOptions.url) return;
    const h = req.headers.authorization;
    const presented = h?.startsWith('Bearer ') ? h.slice(7).trim() : (req.headers['x-api-key'] as string | undefined);
    if (!presented) throw new ApiError('FORGE_ERR_UNAUTHENTICATED', 'an API key is required: send "Authorization: Bearer <key>"');
    const p = keys.verify(presented);
    if (!p) throw new ApiError('FORGE_ERR_UNAUTHENTICATED', 'the API key is not valid or was revoked');
    req.principal = p;
  });
  app.addHook('preHandler', async (req) => {
    const cfg = req.routeOptions.config;
    if (cfg?.public || !req.principal) return;
    requireRole(req.principal, cfg?.roles ?? []);
  });
}

/** Parses a scope path parameter and checks the caller may see it. */
export function scopeParam(req: FastifyRequest, raw: string): ScopeKey {
  const parsed = parseScope(raw);
  if (!parsed) throw new ApiError('FORGE_ERR_VALIDATION', 'scope must be "global", "tenant:<id>" or "run:<tenant>/<run>" (encode / as %2F)', 'scope');
  const p = principalOf(req);
  if (parsed.kind === 'global') {
    if (p.tenantId !== null) throw new ApiError('FORGE_ERR_FORBIDDEN_TENANT', 'the global scope needs a key bound to all tenants', 'scope');
  } else {
    requireTenant(p, parsed.tenantId, 'scope');
  }
  return raw;
}

function fieldOfValidation(e: FastifyError): string | undefined {
  const v = e.validation?.[0];
  if (!v) return undefined;
  const base = v.instancePath.replace(/^\//, '').replace(/\//g, '.');
  const missing = (v.params as { missingProperty?: string; additionalProperty?: string }).missingProperty ?? (v.params as { additionalProperty?: string }).additionalProperty;
  const ctx = e.validationContext && e.validationContext !== 'body' ? `${e.validationContext}.` : '';
  return ctx + [base, missing].filter(Boolean).join('.') || undefined;
}

/** One error shape for every failure: 4xx say what to fix; 5xx hide internals. */
export function installErrorHandler(app: FastifyInstance, onError: (e: unknown, where: string) => void): void {
  app.setErrorHandler((err: FastifyError | ApiError | Error, req: FastifyRequest, reply: FastifyReply) => {
    let body: ErrorBody;
    let status: number;
    const coded = err as { code?: unknown; field?: unknown };
    if (err instanceof ApiError) {
      status = err.statusCode;
      body = { error: { code: err.code, message: err.message, ...(err.field ? { field: err.field } : {}) } };
    } else if (typeof coded.code === 'string' && coded.code in ERRORS && ERRORS[coded.code as ErrorCode] < 500) {
      // A part's own error whose code is in the registry (guard's FORGE_ERR_CONFLICT, ...): same status, same shape.
      status = ERRORS[coded.code as ErrorCode];
      body = { error: { code: coded.code, message: err.message, ...(typeof coded.field === 'string' ? { field: coded.field } : {}) } };
    } else if ((err as FastifyError).validation) {
      status = 400;
      const field = fieldOfValidation(err as FastifyError);
      const v = (err as FastifyError).validation![0]!;
      const additional = (v.params as { additionalProperty?: string }).additionalProperty;
      const msg = additional ? `unknown field "${additional}"` : `${field ?? 'request'} ${v.message ?? 'is invalid'}`;
      body = { error: { code: 'FORGE_ERR_VALIDATION', message: msg, ...(field ? { field } : {}) } };
    } else {
      const fe = err as FastifyError;
      const sc = fe.statusCode ?? 500;
      const known: Record<string, ErrorBody['error'] | undefined> = {
        '415': { code: 'FORGE_ERR_UNSUPPORTED_MEDIA_TYPE', message: 'unsupported content type: send application/json' },
        '413': { code: 'FORGE_ERR_PAYLOAD_TOO_LARGE', message: 'request body too large' },
        FST_ERR_CTP_INVALID_JSON_BODY: { code: 'FORGE_ERR_VALIDATION', message: 'body is not valid JSON', field: 'body' },
        FST_ERR_CTP_EMPTY_JSON_BODY: { code: 'FORGE_ERR_VALIDATION', message: 'body is empty', field: 'body' },
      };
      const hit = known[String(sc)] ?? (sc === 400 ? known[fe.code] : undefined);
      if (hit) {
        status = sc;
        body = { error: hit };
      } else if (sc >= 400 && sc < 500) {
        status = sc;
        body = { error: { code: 'FORGE_ERR_VALIDATION', message: fe.message } };
      }
      else {
        status = (err as { code?: string }).code === 'FORGE_ERR_LEDGER_UNAVAILABLE' ? 503 : 500;
        onError(err, `${req.method} ${req.routeOptions.url ?? req.url}`);
        body =
          status === 503
            ? { error: { code: 'FORGE_ERR_UNAVAILABLE', message: 'shared state is unreachable; try again shortly' } }
            : { error: { code: 'FORGE_ERR_INTERNAL', message: `internal error (request ${req.id})` } };
      }
    }
    void reply.status(status).send(body);
  });
}
