import type { FastifyError } from 'fastify';

/** Forge's one error shape on the wire. */
export interface ForgeErrorBody {
  error: { code: string; message: string; field?: string };
}

/**
 * The code of every framework condition (fastify's own errors), in one table: the same condition gets
 * the same code on every route, the collector's included. The api's registry (api/errors.ts) holds
 * these codes with the same statuses.
 */
const FRAMEWORK: Record<string, { status: number; code: string; message: string; field: string } | undefined> = {
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { status: 415, code: 'FORGE_ERR_UNSUPPORTED_MEDIA_TYPE', message: 'unsupported content type: send application/json', field: 'content-type' },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { status: 400, code: 'FORGE_ERR_VALIDATION', message: 'content-length does not match the body', field: 'content-length' },
  FST_ERR_CTP_BODY_TOO_LARGE: { status: 413, code: 'FORGE_ERR_PAYLOAD_TOO_LARGE', message: 'request body is too large; send less (or smaller batches)', field: 'body' },
  FST_ERR_CTP_INVALID_JSON_BODY: { status: 400, code: 'FORGE_ERR_VALIDATION', message: 'body is not valid JSON', field: 'body' },
  FST_ERR_CTP_EMPTY_JSON_BODY: { status: 400, code: 'FORGE_ERR_VALIDATION', message: 'body is empty', field: 'body' },
  FST_ERR_CTP_INVALID_TYPE: { status: 415, code: 'FORGE_ERR_UNSUPPORTED_MEDIA_TYPE', message: 'content type is invalid', field: 'content-type' },
  FST_ERR_MAX_PARAM_LENGTH: { status: 414, code: 'FORGE_ERR_URI_TOO_LONG', message: 'a path parameter is too long', field: 'url' },
  FST_ERR_BAD_URL: { status: 400, code: 'FORGE_ERR_VALIDATION', message: 'the URL is not valid', field: 'url' },
  Z_DATA_ERROR: { status: 400, code: 'FORGE_ERR_VALIDATION', message: 'body is not valid gzip', field: 'body' },
  Z_BUF_ERROR: { status: 400, code: 'FORGE_ERR_VALIDATION', message: 'body is not valid gzip', field: 'body' },
};

/** A status fastify chose that no table above names: the registry code for it. */
const BY_STATUS: Record<number, string | undefined> = {
  401: 'FORGE_ERR_UNAUTHENTICATED',
  404: 'FORGE_ERR_NOT_FOUND',
  405: 'FORGE_ERR_METHOD_NOT_ALLOWED',
  413: 'FORGE_ERR_PAYLOAD_TOO_LARGE',
  414: 'FORGE_ERR_URI_TOO_LONG',
  415: 'FORGE_ERR_UNSUPPORTED_MEDIA_TYPE',
};

/** The field a schema validation error is about, by its name in the body, query or path ("days", "scope"). */
export function fieldOfValidation(e: FastifyError): string {
  const v = e.validation?.[0];
  const ctx = e.validationContext && e.validationContext !== 'body' ? e.validationContext : 'body';
  if (!v) return ctx;
  const base = v.instancePath.replace(/^\//, '').replace(/\//g, '.');
  const p = v.params as { missingProperty?: string; additionalProperty?: string };
  const leaf = p.missingProperty ?? p.additionalProperty;
  return [base, leaf].filter(Boolean).join('.') || ctx;
}

/**
 * Forge's answer to a failure every part of the HTTP face can meet: a Forge-coded 4xx (or 503) error the
 * part threw, a schema validation error, or one of the framework's own. Undefined: an internal failure
 * (the app's handler reports it and hides it behind FORGE_ERR_INTERNAL).
 */
export function httpErrorOf(err: unknown): { status: number; body: ForgeErrorBody } | undefined {
  const out = mapped(err);
  // Where an error has no field of its own: the part of the request at fault.
  if (out && out.body.error.field === undefined && FIELD_BY_STATUS[out.status]) out.body.error.field = FIELD_BY_STATUS[out.status];
  return out;
}

const FIELD_BY_STATUS: Record<number, string | undefined> = { 401: 'authorization', 403: 'authorization', 404: 'url', 405: 'method', 413: 'body', 414: 'url', 415: 'content-type' };

function mapped(err: unknown): { status: number; body: ForgeErrorBody } | undefined {
  if (err === null || typeof err !== 'object') return undefined;
  const e = err as Partial<FastifyError> & { field?: unknown };
  if (typeof e.code === 'string' && e.code.startsWith('FORGE_ERR_') && typeof e.statusCode === 'number' && ((e.statusCode >= 400 && e.statusCode < 500) || e.statusCode === 502 || e.statusCode === 503)) {
    return { status: e.statusCode, body: { error: { code: e.code, message: String(e.message), ...(typeof e.field === 'string' && e.field ? { field: e.field } : {}) } } };
  }
  if (e.validation) {
    const field = fieldOfValidation(e as FastifyError);
    const v = e.validation[0];
    const additional = (v?.params as { additionalProperty?: string } | undefined)?.additionalProperty;
    const message = additional ? `unknown field "${additional}"` : `${field} ${v?.message ?? 'is invalid'}`;
    return { status: 400, body: { error: { code: 'FORGE_ERR_VALIDATION', message, field } } };
  }
  const hit = typeof e.code === 'string' ? FRAMEWORK[e.code] : undefined;
  if (hit) return { status: hit.status, body: { error: { code: hit.code, message: hit.message, field: hit.field } } };
  if (e.statusCode === 400 && err instanceof SyntaxError) return { status: 400, body: { error: { code: 'FORGE_ERR_VALIDATION', message: 'body is not valid JSON', field: 'body' } } };
  const sc = e.statusCode;
  if (typeof sc === 'number' && sc >= 400 && sc < 500) {
    return { status: sc, body: { error: { code: BY_STATUS[sc] ?? 'FORGE_ERR_VALIDATION', message: String(e.message ?? 'bad request'), field: sc === 401 ? 'authorization' : 'request' } } };
  }
  return undefined;
}
